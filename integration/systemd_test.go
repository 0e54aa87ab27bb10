package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var units = []string{"filtermail.service", "filtermail-incoming.service", "filtermail-transport.service"}

// systemdAnalyze runs Debian's systemd-analyze.
func systemdAnalyze(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze is not installed; scripts/test.sh installs it")
	}
	out, err := exec.Command("systemd-analyze", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The units verify without a single warning. Their ExecStart points at
// the binary under test, as /usr/local/bin/filtermail is not installed
// here.
func TestSystemdUnitsVerify(t *testing.T) {
	dir := t.TempDir()
	for _, unit := range units {
		text, err := os.ReadFile(filepath.Join("../systemd", unit))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(text), "ExecStart=/usr/local/bin/filtermail /usr/local/lib/chatmaild/chatmail.ini ") {
			t.Errorf("%s: ExecStart is not the relay's command line", unit)
		}
		path := filepath.Join(dir, unit)
		os.WriteFile(path, []byte(strings.ReplaceAll(string(text), "/usr/local/bin/filtermail", binary)), 0o644)
		if out := systemdAnalyze(t, "verify", path); out != "" {
			t.Errorf("systemd-analyze verify %s:\n%s", unit, out)
		}
	}
}

// exposure reads the overall score of systemd-analyze security.
var exposure = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

func TestSystemdUnitsHardened(t *testing.T) {
	for _, unit := range units {
		out := systemdAnalyze(t, "security", "--offline=true", filepath.Join("../systemd", unit))
		m := exposure.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("%s: no exposure level in:\n%s", unit, out)
		}
		score, _ := strconv.ParseFloat(m[1], 64)
		t.Logf("%s: exposure %.1f", unit, score)
		// The README records the score; a unit that loses hardening
		// shows here.
		if score > 1.5 {
			t.Errorf("%s: exposure %.1f, want at most 1.5:\n%s", unit, score, out)
		}
	}
}
