package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"filtermail/internal/daemontest"
	"filtermail/policypages"
)

// outputDir receives what the tests make for people to look at.
const outputDir = "output"

// browser starts headless Chromium, as Debian packages it, and returns a
// tab and the messages its console gets.
func browser(t *testing.T) (context.Context, *console) {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed; scripts/test.sh installs it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1000, 1200),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelTab := chromedp.NewContext(ctx)
	t.Cleanup(cancelTab)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	c := &console{}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			c.add(fmt.Sprintf("%s: %s (%s)", m.Type, m.Text, m.URL))
		}
	}()
	return ctx, c
}

// console collects what a tab writes to its console, including the
// browser's own messages such as CSP violations and failed loads.
type console struct {
	mu       sync.Mutex
	messages []string
}

func (c *console) add(m string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.messages = append(c.messages, m)
}

// wait returns the messages once none has come for a moment.
func (c *console) wait() []string {
	for n := -1; ; time.Sleep(300 * time.Millisecond) {
		c.mu.Lock()
		m := append([]string(nil), c.messages...)
		c.mu.Unlock()
		if len(m) == n {
			return m
		}
		n = len(m)
	}
}

func violations(messages []string) []string {
	var v []string
	for _, m := range messages {
		if strings.Contains(m, "Content Security Policy") {
			v = append(v, m)
		}
	}
	return v
}

// The console check must see a violation when there is one: a page with
// an inline script, sent with filtermail's policy, must report it.
func TestBrowserSeesCSPViolations(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", policypages.ContentSecurityPolicy)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!DOCTYPE html><html><head><title>x</title><link rel="icon" href="data:,"></head><body><script>document.title = "ran"</script></body></html>`)
	}))
	defer srv.Close()
	ctx, con := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil || title != "x" {
		t.Errorf("title %q, %v: the inline script ran", title, err)
	}
	if v := violations(con.wait()); len(v) == 0 {
		t.Error("no CSP violation reported for an inline script")
	}
}

func TestBrowserPages(t *testing.T) {
	d := daemontest.Start(t, binary, daemontest.Options{
		Mode:    "outgoing",
		Sockets: []string{"filtermail_smtp_port", "filtermail_http_port"},
		Params: []string{
			"mail_domain = chat.example.org",
			"languages = EN RU DE",
			"privacy_mail = privacy@chat.example.org",
			"privacy_postal = Relay Operators e.V., Example Street 5",
		},
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", d.Ports["filtermail_http_port"])
	ctx, con := browser(t)

	for _, page := range []string{"/", "/info.html", "/privacy.html"} {
		if err := chromedp.Do(ctx, chromedp.Navigate(base+page)); err != nil {
			t.Fatalf("%s: %v", page, err)
		}
		title, err := chromedp.Run(ctx, chromedp.Title())
		if err != nil || !strings.HasSuffix(title, " chat.example.org") {
			t.Errorf("%s: title %q, %v", page, title, err)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	qrWidth, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelector(".qr img").naturalWidth`))
	if err != nil || qrWidth == 0 {
		t.Errorf("QR image not loaded: width %d, %v", qrWidth, err)
	}

	// On the privacy page, choose the second tab: the page in Russian.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/privacy.html")); err != nil {
		t.Fatal(err)
	}
	visible := func(lang string) bool {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(
			`(() => { const s = document.querySelector('section[lang="%s"]'); return s !== null && s.getClientRects().length > 0 && s.offsetHeight > 0 })()`, lang)))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if !visible("en") || visible("ru") || visible("de") {
		t.Error("before a click, only the first tab should show")
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`.language-choice a[hreflang="ru"]`)),
		chromedp.WaitVisible(chromedp.CSS(`section[lang="ru"]`)),
	); err != nil {
		t.Fatal(err)
	}
	if loc, err := chromedp.Run(ctx, chromedp.Location()); err != nil || loc != base+"/privacy.ru.html" {
		t.Errorf("after clicking the second tab: at %s, %v", loc, err)
	}
	if visible("en") || !visible("ru") || visible("de") {
		t.Error("after clicking the second tab, only it should show")
	}
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Политика конфиденциальности chat.example.org", "privacy@chat.example.org"} {
		if !strings.Contains(text, want) {
			t.Errorf("visible text lacks %q", want)
		}
	}
	if strings.Contains(text, "Privacy policy of") || strings.Contains(text, "Datenschutzerklärung") {
		t.Error("the other tabs' text is visible")
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(outputDir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(outputDir, "privacy-tabs.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: integration/%s", path)

	wantCleanConsole(t, con)
}

// wantCleanConsole fails the test if the browser's console had a CSP
// violation, an error or a warning.
func wantCleanConsole(t *testing.T, con *console) {
	t.Helper()
	messages := con.wait()
	if v := violations(messages); len(v) > 0 {
		t.Errorf("CSP violations:\n%s", strings.Join(v, "\n"))
	}
	for _, m := range messages {
		if strings.HasPrefix(m, "error") || strings.HasPrefix(m, "warning") {
			t.Errorf("console: %s", m)
		}
	}
}
