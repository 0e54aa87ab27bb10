package main

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"testing"

	"filtermail/filter/filtertest"
	"filtermail/smtpd/smtpdtest"
)

// The incoming filter's listeners each serve their own: POST /mxdeliv on
// filtermail_http_port_incoming and nothing else there; /metrics and
// /healthz on filtermail_metrics_port_incoming, and no pages.
func TestIncomingListeners(t *testing.T) {
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "incoming", sink.Port)
	mxdeliv := "http://127.0.0.1:" + strconv.Itoa(d.mxdelivPort)
	msg := filtertest.Encrypted(bob, alice, filtertest.GoCryptoV6(t, []byte("hello")))

	req, _ := http.NewRequest("POST", mxdeliv+"/mxdeliv", bytes.NewReader(msg))
	req.Header.Set("X-Mail-From", bob)
	req.Header.Add("X-Mail-To", alice)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "250 OK" {
		t.Errorf("POST /mxdeliv: %s %q, want 200 \"250 OK\"", resp.Status, body)
	}
	wantDelivered(t, sink, smtpdtest.Message{From: bob, To: []string{alice}, Data: msg})

	for _, tt := range []struct {
		port   int
		path   string
		status int
	}{
		{d.mxdelivPort, "/metrics", 404},
		{d.mxdelivPort, "/healthz", 404},
		{d.mxdelivPort, "/", 404},
		{d.mxdelivPort, "/mxdeliv", 405},
		{d.httpPort, "/metrics", 200},
		{d.httpPort, "/healthz", 200},
		{d.httpPort, "/", 404},
		{d.httpPort, "/index.html", 404},
		{d.httpPort, "/mxdeliv", 404},
	} {
		if got := rawStatus(t, tt.port, tt.path); got != tt.status {
			t.Errorf("GET %s on port %d: %d, want %d", tt.path, tt.port, got, tt.status)
		}
	}
	if got := d.scrape(t)[`filtermail_mxdeliv_requests_total{direction="incoming",status="200"}`]; got != 1 {
		t.Errorf("200 counted %v times, want 1", got)
	}
}
