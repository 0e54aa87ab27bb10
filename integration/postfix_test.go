package integration

import (
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// domain is the relay's mail domain in these tests.
const domain = "chat.example.org"

// postfix is a private Postfix instance: its own config, queue, maildirs
// and log in a temporary folder, listening on a loopback host of its own.
type postfix struct {
	t       testing.TB
	name    string         // names it in messages; "" for none
	logTail int            // how much of its maillog a failure logs; 0 for all
	data    map[string]any // what main.cf and master.cf are made of
	dir     string         // everything lives here
	conf    string         // config_directory
	Host    string         // the instance's own loopback address
	mailDir string         // virtual maildirs: mail/<domain>/<user>/
}

// postfixConfig describes an instance.
type postfixConfig struct {
	Host      string    // a loopback address no other test uses
	Services  []service // master.cf's services, on Host
	SinkPort  int       // relayhost: the internet; 0 for none
	Mailboxes []string  // local parts with a maildir

	// Domain is the instance's mail domain, whose users have maildirs;
	// empty for domain.
	Domain string
	// Hostname is myhostname; empty for relay.test.
	Hostname string
	// Main holds lines added at the end of main.cf; a parameter they
	// set replaces the common one.
	Main []string
	// Files holds more files of the config folder, by name.
	Files map[string]string

	// Name names the instance in messages; empty for none.
	Name string
	// LogTail, if not 0, is how much of the end of its maillog a failed
	// test logs; 0 for all of it.
	LogTail int
}

// service is one service of master.cf.
type service struct {
	Name  string // its first field as the README writes it
	Addr  string // where it listens: host:port; empty for a unix service
	Entry string // its lines in master.cf, on the instance's host
}

// readmeServices returns the inet services of the master.cf block in
// README.md on host: each service name gets the host in front, and host
// stands in for 127.0.0.1.
func readmeServices(t testing.TB, host string) []service {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "```\n# master.cf\n")
	block, _, closed := strings.Cut(block, "```")
	if !ok || !closed {
		t.Fatal("README.md has no master.cf block")
	}
	var services []service
	for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
		line = strings.ReplaceAll(line, "127.0.0.1", host)
		switch {
		case strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, " "):
			if len(services) == 0 || len(strings.Fields(line)) != 2 || strings.Fields(line)[0] != "-o" {
				t.Fatalf("README.md master.cf: %q is not an -o option of a service", line)
			}
			services[len(services)-1].Entry += line + "\n"
		default:
			fields := strings.Fields(line)
			if len(fields) != 8 || fields[1] != "inet" {
				t.Fatalf("README.md master.cf: %q is not an inet service", line)
			}
			name := strings.ReplaceAll(fields[0], host, "127.0.0.1")
			listen := fields[0]
			if !strings.Contains(listen, ":") {
				listen = host + ":" + listen
			}
			h, p, _ := net.SplitHostPort(listen)
			port, err := net.LookupPort("tcp", p)
			if err != nil {
				t.Fatalf("README.md master.cf: service %s: %v", name, err)
			}
			fields[0] = listen
			services = append(services, service{Name: name, Addr: net.JoinHostPort(h, strconv.Itoa(port)),
				Entry: strings.Join(fields, " ") + "\n"})
		}
	}
	return services
}

const mainCF = `compatibility_level = 3.6
queue_directory = {{.Dir}}/queue
data_directory = {{.Dir}}/data
maillog_file_prefixes = {{.Dir}}
maillog_file = {{.Dir}}/maillog
myhostname = {{.Hostname}}
mydomain = {{.Domain}}
myorigin = $mydomain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
{{if .SinkPort}}relayhost = [127.0.0.1]:{{.SinkPort}}
{{end}}smtp_tls_security_level = none
smtpd_tls_security_level = none
smtp_dns_support_level = disabled
disable_dns_lookups = yes
alias_maps =
alias_database =
local_recipient_maps =
local_transport = error:no local delivery
virtual_mailbox_domains = {{.Domain}}
virtual_mailbox_base = {{.Dir}}/mail
virtual_mailbox_maps = texthash:{{.Dir}}/conf/vmailbox
virtual_uid_maps = static:{{.UID}}
virtual_gid_maps = static:{{.GID}}
message_size_limit = 52428800
virtual_mailbox_limit = 0
smtpd_proxy_timeout = 100s
delay_warning_time = 0
bounce_queue_lifetime = 0
maximal_queue_lifetime = 1h
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
notify_classes =
`

const masterCF = `{{range .Services}}{{.Entry}}{{end}}pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`

// registerMu serialises changes to the default instance's
// alternate_config_directories.
var registerMu sync.Mutex

// startPostfix sets up and starts a private Postfix instance. It is
// stopped, unregistered and removed when the test ends, whether it passed
// or not.
func startPostfix(t testing.TB, cfg postfixConfig) *postfix {
	t.Helper()
	for _, tool := range []string{"postfix", "postconf"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed; scripts/test.sh installs Postfix", tool)
		}
	}
	dir, err := os.MkdirTemp("", "filtermail-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Domain == "" {
		cfg.Domain = domain
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "relay.test"
	}
	p := &postfix{t: t, name: cfg.Name, logTail: cfg.LogTail, dir: dir, conf: filepath.Join(dir, "conf"), Host: cfg.Host, mailDir: filepath.Join(dir, "mail", cfg.Domain)}
	t.Cleanup(func() { os.RemoveAll(dir) })
	addrs := map[string]string{}
	for _, s := range cfg.Services {
		if s.Addr == "" {
			continue
		}
		if other, ok := addrs[s.Addr]; ok {
			t.Fatalf("services %s and %s both on %s", other, s.Name, s.Addr)
		}
		addrs[s.Addr] = s.Name
	}
	// Postfix's processes run as its own users: they must reach the
	// folders, and the virtual delivery agent writes as nobody.
	os.Chmod(dir, 0o755)
	for _, sub := range []string{"conf", "data", "queue"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o755)
	}
	owner, err := user.Lookup("postfix")
	if err != nil {
		t.Fatalf("no postfix user: %v", err)
	}
	uid, _ := strconv.Atoi(owner.Uid)
	gid, _ := strconv.Atoi(owner.Gid)
	os.Chown(filepath.Join(dir, "data"), uid, gid)
	nobody := 65534
	var vmailbox strings.Builder
	for _, user := range cfg.Mailboxes {
		fmt.Fprintf(&vmailbox, "%s@%s %s/%s/\n", user, cfg.Domain, cfg.Domain, user)
	}
	os.MkdirAll(p.mailDir, 0o755)
	os.Chown(filepath.Join(dir, "mail"), nobody, nobody)
	os.Chown(p.mailDir, nobody, nobody)
	os.WriteFile(filepath.Join(p.conf, "vmailbox"), []byte(vmailbox.String()), 0o644)
	data := map[string]any{"Dir": dir, "Host": cfg.Host, "SinkPort": cfg.SinkPort, "UID": nobody, "GID": nobody,
		"Services": cfg.Services, "Domain": cfg.Domain, "Hostname": cfg.Hostname}
	p.data = data
	// A parameter set twice makes every Postfix process warn: the common
	// lines that Main sets again go.
	set := map[string]bool{}
	for _, line := range cfg.Main {
		name, _, _ := strings.Cut(line, "=")
		set[strings.TrimSpace(name)] = true
	}
	var cf strings.Builder
	for line := range strings.Lines(execTemplate(t, mainCF, data)) {
		if name, _, _ := strings.Cut(line, "="); !set[strings.TrimSpace(name)] {
			cf.WriteString(line)
		}
	}
	for _, line := range cfg.Main {
		cf.WriteString(line + "\n")
	}
	files := map[string]string{"main.cf": cf.String()}
	maps.Copy(files, cfg.Files)
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(p.conf, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeTemplate(t, filepath.Join(p.conf, "master.cf"), masterCF, data)

	registerMu.Lock()
	defer registerMu.Unlock()
	setAlternates(t, func(dirs []string) []string { return append(dirs, p.conf) })
	t.Cleanup(func() {
		p.stop()
		registerMu.Lock()
		defer registerMu.Unlock()
		setAlternates(t, func(dirs []string) []string {
			return slices.DeleteFunc(dirs, func(d string) bool { return d == p.conf })
		})
		if t.Failed() {
			log := p.Log()
			if p.logTail > 0 && len(log) > p.logTail {
				t.Logf("Postfix log%s, its end:\n…%s", p.called(), log[len(log)-p.logTail:])
			} else {
				t.Logf("Postfix log%s:\n%s", p.called(), log)
			}
		}
	})
	if out, err := p.run("start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
		t.Fatalf("postfix start: %v\n%s\n%s", err, out, log)
	}
	for _, s := range cfg.Services {
		if s.Addr != "" {
			waitListening(t, "Postfix "+s.Name, s.Addr)
		}
	}
	return p
}

// called is the instance's name in messages: " (name)", or nothing.
func (p *postfix) called() string {
	if p.name == "" {
		return ""
	}
	return " (" + p.name + ")"
}

// Addr is the address of the service name.
func (p *postfix) Addr(name string) string {
	for _, s := range p.data["Services"].([]service) {
		if s.Name == name {
			return s.Addr
		}
	}
	p.t.Fatalf("no service %s", name)
	return ""
}

// stop stops the instance and waits until its master process has gone,
// so that its ports are free when the test gives its host back.
func (p *postfix) stop() {
	pid, _ := os.ReadFile(filepath.Join(p.dir, "queue", "pid", "master.pid"))
	p.run("stop")
	n, err := strconv.Atoi(strings.TrimSpace(string(pid)))
	if err != nil {
		return
	}
	for deadline := time.Now().Add(20 * time.Second); syscall.Kill(n, 0) == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			syscall.Kill(n, syscall.SIGKILL)
			p.t.Errorf("Postfix's master %d%s did not stop", n, p.called())
			return
		}
	}
}

func writeTemplate(t testing.TB, path, text string, data any) {
	t.Helper()
	if err := os.WriteFile(path, []byte(execTemplate(t, text, data)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// execTemplate returns what the template text makes of data.
func execTemplate(t testing.TB, text string, data any) string {
	t.Helper()
	var b strings.Builder
	if err := template.Must(template.New("").Parse(text)).Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// setAlternates edits alternate_config_directories of the default
// instance, which must list an instance's folder before it may start.
func setAlternates(t testing.TB, edit func([]string) []string) {
	t.Helper()
	// Postfix installed without a configuration has no main.cf yet.
	if out, err := exec.Command("postconf", "-d", "-h", "config_directory").Output(); err == nil {
		mainCF := filepath.Join(strings.TrimSpace(string(out)), "main.cf")
		if _, err := os.Stat(mainCF); os.IsNotExist(err) {
			os.WriteFile(mainCF, nil, 0o644)
		}
	}
	out, err := exec.Command("postconf", "-h", "alternate_config_directories").Output()
	if err != nil {
		t.Fatalf("postconf: %v", err)
	}
	// Instances of test runs that were killed are gone: forget them.
	dirs := slices.DeleteFunc(strings.Fields(strings.ReplaceAll(string(out), ",", " ")), func(d string) bool {
		_, err := os.Stat(d)
		return os.IsNotExist(err)
	})
	dirs = edit(dirs)
	if out, err := exec.Command("postconf", "-e", "alternate_config_directories = "+strings.Join(dirs, " ")).CombinedOutput(); err != nil {
		t.Fatalf("postconf -e: %v\n%s", err, out)
	}
}

// run runs `postfix -c CONF cmd`. Postfix prints its errors only to a
// terminal, so it runs under script(1).
func (p *postfix) run(cmd string) (string, error) {
	out, err := exec.Command("script", "-q", "-e", "-c", "postfix -c "+p.conf+" "+cmd, "/dev/null").CombinedOutput()
	return string(out), err
}

// setService turns the service name off or on again, with a `postfix
// reload`, and waits until its port follows (a unix service has none).
func (p *postfix) setService(name string, on bool) {
	p.t.Helper()
	all := p.data["Services"].([]service)
	var services []service
	for _, s := range all {
		if s.Name != name || on {
			services = append(services, s)
		}
	}
	data := maps.Clone(p.data)
	data["Services"] = services
	writeTemplate(p.t, filepath.Join(p.conf, "master.cf"), masterCF, data)
	if out, err := p.run("reload"); err != nil {
		p.t.Fatalf("postfix reload: %v\n%s", err, out)
	}
	addr := p.Addr(name)
	if addr == "" {
		return
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		if (err == nil) == on {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("service %s did not turn %v", name, on)
		}
	}
}

// Log returns the instance's maillog.
func (p *postfix) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "maillog"))
	return string(b)
}

// queue returns the messages in the queue as `postqueue -j` lists them:
// a JSON object a line. Postfix reads its queue itself when it is stopped.
func (p *postfix) queue() string {
	p.t.Helper()
	out, err := exec.Command("postqueue", "-c", p.conf, "-j").Output()
	if err != nil {
		p.t.Fatalf("postqueue -j: %v", err)
	}
	return string(out)
}

// QueueEmpty reports whether no message waits in the queue.
func (p *postfix) QueueEmpty() bool {
	p.t.Helper()
	return strings.TrimSpace(p.queue()) == ""
}

// waitQueueEmpty waits until no message waits in the queue: whatever
// Postfix has taken is delivered, or bounced. A message that a filter
// passed is queued before the client hears 250, so once the replies are
// in and the queue is empty, the maildirs hold all that will ever arrive.
func (p *postfix) waitQueueEmpty() {
	p.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !p.QueueEmpty(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			out, _ := exec.Command("postqueue", "-c", p.conf, "-p").CombinedOutput()
			p.t.Fatalf("the queue does not empty:\n%s", out)
		}
	}
}

// Mailbox returns the messages delivered to user's maildir, in no
// particular order.
func (p *postfix) Mailbox(user string) [][]byte {
	var msgs [][]byte
	files, _ := filepath.Glob(filepath.Join(p.mailDir, user, "new", "*"))
	slices.Sort(files)
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			msgs = append(msgs, b)
		}
	}
	return msgs
}

// waitMailbox waits until user has n messages and returns them.
func (p *postfix) waitMailbox(user string, n int) [][]byte {
	p.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		msgs := p.Mailbox(user)
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s has %d messages, want %d", user, len(msgs), n)
		}
	}
}

func waitListening(t testing.TB, what, addr string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not listen on %s: %v", what, addr, err)
		}
	}
}
