package tlspolicy

import (
	"testing"

	"github.com/mjl-/mox/mtasts"
)

// Whatever a server sends as a policy or a record, and whatever an MX
// record names, nothing panics, and a policy's own patterns match the
// hosts they name.
func FuzzPolicy(f *testing.F) {
	f.Add("version: STSv1\r\nmode: enforce\r\nmx: mx.example.org\r\nmx: *.example.net\r\nmax_age: 604800\r\n", "mx.example.org")
	f.Add("version: STSv1\nmode: testing\nmx: xn--bcher-kva.example\nmax_age: 0\nx: y z\n", "a.example.net")
	f.Add("version: STSv1\nmode: none\nmax_age: 99999999999\n", "")
	f.Add("v=STSv1; id=20261101; ext=1", "bücher.example")
	f.Fuzz(func(t *testing.T, text, host string) {
		mtasts.ParseRecord(text)
		STS{MX: []string{host, "*." + host}}.Matches(host)
		p, err := mtasts.ParsePolicy(text)
		if err != nil {
			return
		}
		sts := stsOf(p, "1")
		if sts.MaxAge < 0 || sts.MaxAge > MaxMaxAge {
			t.Errorf("max_age %v", sts.MaxAge)
		}
		sts.Matches(host)
		for _, mx := range p.MX {
			if !mx.Wildcard && !sts.Matches(mx.Domain.ASCII) {
				t.Errorf("%+v does not match its own %s", sts, mx.Domain.ASCII)
			}
		}
	})
}
