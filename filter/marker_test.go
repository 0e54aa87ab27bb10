package filter_test

import (
	"os"
	"path/filepath"
	"testing"

	"filtermail/filter"
)

func TestMailboxesMarked(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "mail")
	mkMarker := func(d, addr string) {
		if err := os.MkdirAll(filepath.Join(d, addr), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, addr, "enforceE2EEincoming"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mkMarker(dir, "strict@chat.example.org")
	os.MkdirAll(filepath.Join(dir, "easy@chat.example.org"), 0o755)
	os.WriteFile(filepath.Join(dir, "file@chat.example.org"), nil, 0o644)
	// A marker outside the mailboxes, and a link pointing at it.
	mkMarker(base, "outside@chat.example.org")
	os.Symlink(filepath.Join(base, "outside@chat.example.org"), filepath.Join(dir, "link@chat.example.org"))

	m := filter.Mailboxes{Dir: dir}
	tests := []struct {
		addr    string
		marked  bool
		wantErr bool
	}{
		{"strict@chat.example.org", true, false},
		{"STRICT@chat.example.org", true, false},
		{"easy@chat.example.org", false, false},
		{"nobody@chat.example.org", false, false},
		{"file@chat.example.org", false, false},
		{"link@chat.example.org", false, true}, // never followed out of the directory
		{"no-at-sign", true, false},
		{"../outside@chat.example.org", true, false},
		{"a/b@chat.example.org", true, false},
		{"..@chat.example.org", true, false},
		{".hidden@chat.example.org", true, false},
		{"", true, false},
	}
	for _, tt := range tests {
		marked, err := m.Marked(tt.addr)
		if marked != tt.marked || (err != nil) != tt.wantErr {
			t.Errorf("Marked(%q) = %v, %v; want %v, error %v", tt.addr, marked, err, tt.marked, tt.wantErr)
		}
	}

	none := filter.Mailboxes{Dir: filepath.Join(base, "missing")}
	if marked, err := none.Marked("strict@chat.example.org"); marked || err != nil {
		t.Errorf("missing mailboxes_dir: %v, %v; want unmarked", marked, err)
	}
}

func TestMailboxesDisabled(t *testing.T) {
	dir := t.TempDir()
	for _, addr := range []string{"gone@chat.example.org", "here@chat.example.org"} {
		os.MkdirAll(filepath.Join(dir, addr), 0o755)
	}
	os.WriteFile(filepath.Join(dir, "gone@chat.example.org", "DISABLED"), nil, 0o644)
	m := filter.Mailboxes{Dir: dir}
	for addr, want := range map[string]bool{
		"gone@chat.example.org":    true,
		"Gone@Chat.Example.org":    true,
		"here@chat.example.org":    false,
		"nobody@chat.example.org":  false,
		"../gone@chat.example.org": false, // not looked up: Postfix answers for it
		"no-at-sign":               false,
	} {
		if got, err := m.Disabled(addr); got != want || err != nil {
			t.Errorf("Disabled(%q) = %v, %v; want %v", addr, got, err, want)
		}
	}
}
