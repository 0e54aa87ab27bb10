package main

import (
	"bufio"
	"bytes"
	"fmt"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"filtermail/internal/testnet"
	"filtermail/smtpd/smtpdtest"
)

// pageParams give every value the pages show a distinct setting.
var pageParams = []string{
	"languages = EN RU DE",
	"max_user_send_per_minute = 37",
	"max_message_size = 20971520",
	"max_mailbox_size = 321M",
	"delete_mails_after = 23",
	"delete_inactive_users_after = 111",
	"privacy_postal = Relay Operators e.V., Example Street 5",
	"privacy_mail = privacy@chat.example.org",
	"privacy_pdo = Dana Officer, Data Lane 7",
	"privacy_supervisor = Commissioner for Examples",
}

func (d *daemon) url(path string) string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(d.httpPort)) + path
}

// get fetches path from the daemon's side listener.
func (d *daemon) get(t *testing.T, path string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", d.url(path), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

var leftSyntax = regexp.MustCompile(`\{\{|\}\}|\{%|%\}|%content placeholder%`)

func TestPagesOverHTTP(t *testing.T) {
	d := startDaemon(t, "outgoing", newSink(t, smtpdtest.Accept).Port, pageParams...)
	for _, path := range []string{"/", "/index.html", "/info.html", "/privacy.html", "/privacy.ru.html"} {
		resp, body := d.get(t, path)
		html := string(body)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("%s: %s, %s", path, resp.Status, resp.Header.Get("Content-Type"))
		}
		checkHeaders(t, path, resp)
		if resp.Header.Get("Cache-Control") != "no-cache" {
			t.Errorf("%s: Cache-Control %q", path, resp.Header.Get("Cache-Control"))
		}
		if m := leftSyntax.FindString(html); m != "" {
			t.Errorf("%s: template syntax %q left", path, m)
		}
		for _, want := range []string{`>English</a>`, `>Русский</a>`, `>Deutsch</a>`, `lang="en"`, `lang="ru"`, `lang="de"`} {
			if !strings.Contains(html, want) {
				t.Errorf("%s: no %s", path, want)
			}
		}
		if en, ru := strings.Index(html, ">English<"), strings.Index(html, ">Русский<"); en > ru {
			t.Errorf("%s: tabs not in the configured order", path)
		}
	}
	_, privacy := d.get(t, "/privacy.html")
	for _, want := range []string{"23 days", "111", "37", "20 MiB", "321 MiB", "Relay Operators e.V., Example Street 5",
		"privacy@chat.example.org", "Dana Officer, Data Lane 7", "Commissioner for Examples", "Art. 6(1)(b) GDPR", "Art. 6(1)(f) GDPR"} {
		if !bytes.Contains(privacy, []byte(want)) {
			t.Errorf("privacy.html lacks %q", want)
		}
	}

	// Assets.
	for path, ctype := range map[string]string{
		"/main.css":          "text/css; charset=utf-8",
		"/language-tabs.css": "text/css; charset=utf-8",
		"/icon.svg":          "image/svg+xml",
		"/qr-chatmail-invite-chat.example.org.png": "image/png",
	} {
		resp, _ := d.get(t, path)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ctype {
			t.Errorf("%s: %s, %q", path, resp.Status, resp.Header.Get("Content-Type"))
		}
		checkHeaders(t, path, resp)
	}
	_, qr := d.get(t, "/qr-chatmail-invite-chat.example.org.png")
	if got := decodeQR(t, qr); got != "DCACCOUNT:https://chat.example.org/new" {
		t.Errorf("QR code says %q", got)
	}
	_, home := d.get(t, "/")
	if !bytes.Contains(home, []byte(`href="DCACCOUNT:https://chat.example.org/new"`)) {
		t.Error("home page has no invite link")
	}

	resp, body := d.get(t, "/healthz")
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Errorf("/healthz: %s %q", resp.Status, body)
	}
}

func checkHeaders(t *testing.T, path string, resp *http.Response) {
	t.Helper()
	for key, want := range map[string]string{
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"Content-Security-Policy": "default-src 'none'; img-src 'self' data:; style-src 'self'; ",
	} {
		if got := resp.Header.Get(key); !strings.HasPrefix(got, want) {
			t.Errorf("%s: %s %q, want %q", path, key, got, want)
		}
	}
	if etag := resp.Header.Get("ETag"); !regexp.MustCompile(`^"[0-9a-f]{32}"$`).MatchString(etag) {
		t.Errorf("%s: ETag %q, want a strong one", path, etag)
	}
}

func TestPagesETag(t *testing.T) {
	d := startDaemon(t, "outgoing", newSink(t, smtpdtest.Accept).Port)
	for _, path := range []string{"/privacy.html", "/main.css"} {
		resp, body := d.get(t, path)
		etag := resp.Header.Get("ETag")
		resp, again := d.get(t, path, "If-None-Match", etag)
		if resp.StatusCode != http.StatusNotModified || len(again) != 0 || resp.Header.Get("ETag") != etag {
			t.Errorf("%s with its ETag: %s, %d bytes", path, resp.Status, len(again))
		}
		resp, again = d.get(t, path, "If-None-Match", `"0123"`)
		if resp.StatusCode != 200 || !bytes.Equal(again, body) {
			t.Errorf("%s with another ETag: %s", path, resp.Status)
		}
	}
	_, info := d.get(t, "/info.html")
	_, privacy := d.get(t, "/privacy.html")
	infoTag, _ := d.get(t, "/info.html")
	privacyTag, _ := d.get(t, "/privacy.html")
	if bytes.Equal(info, privacy) || infoTag.Header.Get("ETag") == privacyTag.Header.Get("ETag") {
		t.Error("two pages share an ETag")
	}

	resp, err := http.Head(d.url("/info.html"))
	if err != nil || resp.StatusCode != 200 || resp.ContentLength != int64(len(info)) {
		t.Errorf("HEAD: %v %v", resp, err)
	}
	resp, err = http.Post(d.url("/info.html"), "text/plain", strings.NewReader("x"))
	if err != nil || resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %v %v", resp, err)
	}
}

// rawStatus sends target exactly as written and returns the status code.
func rawStatus(t *testing.T, port int, target string) int {
	t.Helper()
	conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", target)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestPagesTraversal(t *testing.T) {
	www := filepath.Join(t.TempDir(), "www")
	if err := os.CopyFS(www, os.DirFS("../../policypages/testdata/www")); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "secret.txt")
	os.WriteFile(secret, []byte("secret"), 0o644)
	os.Symlink(secret, filepath.Join(www, "src", "secret.txt"))
	d := startDaemon(t, "outgoing", newSink(t, smtpdtest.Accept).Port, "www_folder = "+www)

	if code := rawStatus(t, d.httpPort, "/banner.png"); code != 200 {
		t.Fatalf("/banner.png: %d", code)
	}
	for _, target := range []string{
		"/../../../../etc/passwd",
		"/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
		"/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
		"/..%2f..%2fetc%2fpasswd",
		"//etc/passwd",
		"//index.html",
		"/./index.html",
		"/src/index.md",
		"/index.md",
		"/page-layout.html",
		"/locales/EN/index.md",
		"/.hidden",
		"/secret.txt",
		secret,
		"/main.css/",
		"/MAIN.CSS",
		"/main.css%00",
		"/nonexistent.html",
		"http://127.0.0.1/../etc/passwd",
	} {
		code := rawStatus(t, d.httpPort, target)
		if code != 404 && code != 400 {
			t.Errorf("%s: status %d, want 404", target, code)
		}
	}
	d.waitLog(t, "secret.txt: path escapes from parent; not served", 1)
}

func TestPagesOff(t *testing.T) {
	host := testnet.Host(t)
	// With its listener off, the filter does not render pages, so broken
	// page sources do not keep it from starting.
	d := startDaemon(t, "incoming", newSink(t, smtpdtest.Accept).Port, "filtermail_host = "+host,
		"filtermail_http_port_incoming = 0", "www_folder = /nonexistent")
	if strings.Contains(d.Log(), "pages") {
		t.Errorf("pages listen with the port set to 0:\n%s", d.Log())
	}
	// Nothing listens on the filter's host: neither the incoming side
	// port nor the outgoing one.
	for _, port := range []string{"10082", "10083"} {
		if conn, err := net.Dial("tcp", net.JoinHostPort(host, port)); err == nil {
			conn.Close()
			t.Errorf("something listens on %s", port)
		}
	}
}

func TestPagesReload(t *testing.T) {
	d := startDaemon(t, "outgoing", newSink(t, smtpdtest.Accept).Port, "delete_mails_after = 23")
	ini, err := os.ReadFile(d.IniPath)
	if err != nil {
		t.Fatal(err)
	}
	rewrite := func(from, to string) {
		t.Helper()
		ini = bytes.Replace(ini, []byte(from), []byte(to), 1)
		if err := os.WriteFile(d.IniPath, ini, 0o644); err != nil {
			t.Fatal(err)
		}
		d.Cmd.Process.Signal(syscall.SIGHUP)
	}
	waitLog := func(want string, n int) { t.Helper(); d.waitLog(t, want, n) }
	shows := func(want string) {
		t.Helper()
		if _, body := d.get(t, "/privacy.html"); !strings.Contains(strings.Join(strings.Fields(string(body)), " "), want) {
			t.Errorf("privacy page does not show %q", want)
		}
	}
	shows("after 23 days")

	rewrite("delete_mails_after = 23", "delete_mails_after = 31")
	waitLog("Reloaded "+d.IniPath+".", 1)
	shows("after 31 days")

	rewrite("delete_mails_after = 31", "delete_mails_after = 32\nlanguages = EN XX")
	waitLog("Reload failed, keeping the running config and pages: ", 1)
	shows("after 31 days")
	if !strings.Contains(d.Log(), `languages: unknown language code "XX"`) {
		t.Errorf("the log does not say what is wrong:\n%s", d.Log())
	}

	www := filepath.Join(t.TempDir(), "www")
	os.CopyFS(www, os.DirFS("../../policypages/testdata/www"))
	os.WriteFile(filepath.Join(www, "src/privacy.md"), []byte("# Privacy\n{% endif %}\n"), 0o644)
	rewrite("languages = EN XX", "www_folder = "+www)
	waitLog("Reload failed, keeping the running config and pages: ", 2)
	shows("after 31 days")
	if !strings.Contains(d.Log(), "www/src/privacy.md:2:") {
		t.Errorf("the log does not name the broken template:\n%s", d.Log())
	}

	// The SMTP side kept working throughout.
	c := dial(t, d)
	wantReply(t, "NOOP", c.Cmd("NOOP"), "250")
}

func TestRenderCommand(t *testing.T) {
	d := startDaemon(t, "outgoing", newSink(t, smtpdtest.Accept).Port, pageParams...)
	dir := filepath.Join(t.TempDir(), "html")
	cmd := exec.Command(binary, "render", d.IniPath, dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Wrote 16 files to "+dir) {
		t.Fatalf("render: %v\n%s", err, out)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 16 {
		t.Errorf("%d files written", len(entries))
	}
	for _, e := range entries {
		written, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		resp, served := d.get(t, "/"+e.Name())
		if resp.StatusCode != 200 || !bytes.Equal(written, served) {
			t.Errorf("%s: written file differs from the served one", e.Name())
		}
	}
}

// decodeQR reads the text of the QR code in a PNG image.
func decodeQR(t *testing.T, pngData []byte) string {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(pngData))
	if err != nil {
		t.Fatal(err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		t.Fatalf("decoding QR code: %v", err)
	}
	return res.GetText()
}
