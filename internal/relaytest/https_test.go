package relaytest

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"filtermail/internal/testnet"
)

// httpsClient returns a client that trusts ca, speaks HTTP/2 if h2, keeps
// TLS sessions and gives up after timeout.
func httpsClient(h2 bool, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{
				RootCAs:            ca.Pool,
				ClientSessionCache: tls.NewLRUClientSessionCache(0),
			},
			ForceAttemptHTTP2: h2,
		},
	}
}

// post posts body to url with the envelope headers and returns the status
// and body of the answer.
func post(c *http.Client, url, from string, to []string, body string) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("X-Mail-From", from)
	for _, rcpt := range to {
		req.Header.Add("X-Mail-To", rcpt)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestHTTPSDeliver(t *testing.T) {
	for _, tt := range []struct {
		h2    bool
		proto string
	}{{false, "HTTP/1.1"}, {true, "HTTP/2.0"}} {
		t.Run(tt.proto, func(t *testing.T) {
			host := testnet.Host(t)
			h := StartHTTPS(t, host, certificate(t, host))
			c := httpsClient(tt.h2, 10*time.Second)
			defer c.CloseIdleConnections()
			url := "https://" + host + "/mxdeliv"
			to := []string{"bob@relay.example", "<carol@relay.example>"}
			body := "Subject: hi\r\n\r\nhello\r\n"
			for range 2 {
				status, reply, err := post(c, url, "alice@example.org", to, body)
				if err != nil || status != http.StatusOK || reply != "250 OK" {
					t.Fatalf("POST /mxdeliv: %d %q, %v; want 200 \"250 OK\"", status, reply, err)
				}
			}
			want := Request{From: "alice@example.org", To: to, Body: []byte(body), Proto: tt.proto, Conn: 1}
			reqs := h.Requests()
			if len(reqs) != 2 {
				t.Fatalf("%d requests recorded, want 2", len(reqs))
			}
			for _, got := range reqs {
				if got.From != want.From || !slices.Equal(got.To, want.To) || string(got.Body) != body ||
					got.Proto != want.Proto || got.Conn != want.Conn || got.Resumed {
					t.Errorf("request %+v, want %+v", got, want)
				}
			}
			if n := h.Connections(); n != 1 {
				t.Errorf("%d connections, want 1 (kept alive)", n)
			}
		})
	}
}

func TestHTTPSServerName(t *testing.T) {
	host := testnet.Host(t)
	StartHTTPS(t, host, certificate(t, "mx.relay.example"))
	c := httpsClient(true, 10*time.Second)
	defer c.CloseIdleConnections()
	url := "https://" + host + "/mxdeliv"
	if _, _, err := post(c, url, "", nil, ""); err == nil {
		t.Error("certificate for mx.relay.example accepted for " + host)
	}
	c.Transport.(*http.Transport).TLSClientConfig.ServerName = "mx.relay.example"
	if status, _, err := post(c, url, "", nil, ""); err != nil || status != http.StatusOK {
		t.Errorf("POST /mxdeliv to mx.relay.example: %d, %v", status, err)
	}
}

func TestHTTPSSystemRoots(t *testing.T) {
	host := testnet.Host(t)
	StartHTTPS(t, host, certificate(t, host))
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	if status, _, err := post(c, "https://"+host+"/mxdeliv", "", nil, ""); err != nil || status != http.StatusOK {
		t.Errorf("POST /mxdeliv trusting the system roots: %d, %v", status, err)
	}
}

func TestHTTPSReply(t *testing.T) {
	host := testnet.Host(t)
	h := StartHTTPS(t, host, certificate(t, host))
	c := httpsClient(false, 10*time.Second)
	defer c.CloseIdleConnections()
	url := "https://" + host + "/mxdeliv"
	h.Reply(http.StatusBadRequest, "523 Encryption Needed: Invalid Unencrypted Mail")
	status, reply, err := post(c, url, "alice@example.org", []string{"bob@relay.example"}, "x")
	if err != nil || status != http.StatusBadRequest || reply != "523 Encryption Needed: Invalid Unencrypted Mail" {
		t.Errorf("after Reply(400, …): %d %q, %v", status, reply, err)
	}
	if n := len(h.Requests()); n != 1 {
		t.Errorf("%d requests recorded, want 1", n)
	}
}

func TestHTTPSPathsAndMethods(t *testing.T) {
	host := testnet.Host(t)
	h := StartHTTPS(t, host, certificate(t, host))
	c := httpsClient(false, 10*time.Second)
	defer c.CloseIdleConnections()
	for _, tt := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/mxdeliv", http.StatusMethodNotAllowed},
		{http.MethodPut, "/mxdeliv", http.StatusMethodNotAllowed},
		{http.MethodPost, "/", http.StatusNotFound},
		{http.MethodPost, "/mxdeliv/", http.StatusNotFound},
		{http.MethodGet, "/other", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(tt.method, "https://"+host+tt.path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tt.method, tt.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, resp.StatusCode, tt.status)
		}
	}
	if n := len(h.Requests()); n != 0 {
		t.Errorf("%d requests recorded, want 0", n)
	}
}

// isTimeout tells whether err is a timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestHTTPSStall(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		host := testnet.Host(t)
		h := StartHTTPS(t, host, certificate(t, host))
		h.Stall()
		url := "https://" + host + "/mxdeliv"
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader("stalled"))
			resp, err := httpsClient(h2, 0).Do(req)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		eventually(t, "one request", func() bool { return len(h.Requests()) == 1 })
		select {
		case err := <-done:
			t.Fatalf("stalled request (HTTP/2 %v) answered: %v", h2, err)
		case <-time.After(200 * time.Millisecond):
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("stalled request (HTTP/2 %v): %v, want it canceled", h2, err)
		}
		if reqs := h.Requests(); len(reqs) != 1 || string(reqs[0].Body) != "stalled" {
			t.Errorf("stalled request (HTTP/2 %v) recorded as %+v", h2, reqs)
		}

		h.Reply(http.StatusOK, "250 OK")
		c := httpsClient(h2, 10*time.Second)
		if status, _, err := post(c, url, "", nil, ""); err != nil || status != http.StatusOK {
			t.Errorf("after Reply (HTTP/2 %v): %d, %v", h2, status, err)
		}
		c.CloseIdleConnections()

		h.Stall()
		go post(httpsClient(h2, 0), url, "", nil, "") // still waiting when the test ends
		eventually(t, "three requests", func() bool { return len(h.Requests()) == 3 })
	}
}

func TestHTTPSStallHandshake(t *testing.T) {
	host := testnet.Host(t)
	h := StartHTTPS(t, host, certificate(t, host))
	h.StallHandshake()
	_, _, err := post(httpsClient(false, time.Second), "https://"+host+"/mxdeliv", "", nil, "")
	if !isTimeout(err) {
		t.Errorf("stalled handshake: %v, want a timeout", err)
	}
	eventually(t, "one connection", func() bool { return h.Connections() == 1 })
	if n := len(h.Requests()); n != 0 {
		t.Errorf("%d requests recorded, want 0", n)
	}
	// A handshake of its own, with a deadline.
	c, err := net.Dial("tcp", h.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, &tls.Config{RootCAs: ca.Pool, ServerName: host})
	tc.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if err := tc.Handshake(); !isTimeout(err) {
		t.Errorf("stalled handshake: %v, want a timeout", err)
	}
}

func TestHTTPSResumption(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		host := testnet.Host(t)
		h := StartHTTPS(t, host, certificate(t, host))
		c := httpsClient(h2, 10*time.Second)
		url := "https://" + host + "/mxdeliv"
		for range 2 {
			if status, _, err := post(c, url, "", nil, ""); err != nil || status != http.StatusOK {
				t.Fatalf("POST /mxdeliv: %d, %v", status, err)
			}
			c.CloseIdleConnections()
		}
		reqs := h.Requests()
		if len(reqs) != 2 || reqs[0].Resumed || reqs[0].Conn != 1 || !reqs[1].Resumed || reqs[1].Conn != 2 {
			t.Errorf("HTTP/2 %v: requests %+v, want a new session on connection 1, resumed on 2", h2, reqs)
		}
		if n := h.Connections(); n != 2 {
			t.Errorf("HTTP/2 %v: %d connections, want 2", h2, n)
		}
	}
}
