package filter_test

import (
	"bytes"
	"strings"
	"testing"

	"filtermail/filter"
)

// Hand-made packet streams, one per header format and length encoding.
var (
	pkeskNew     = []byte{0xc1, 3, 3, 0xaa, 0xbb}                // OpenPGP format, 1-octet length
	pkeskLegacy1 = []byte{0x84, 3, 3, 0xaa, 0xbb}                // legacy, 1-octet length
	pkeskLegacy2 = []byte{0x85, 0, 3, 3, 0xaa, 0xbb}             // legacy, 2-octet length
	pkeskLegacy4 = []byte{0x86, 0, 0, 0, 3, 3, 0xaa, 0xbb}       // legacy, 4-octet length
	skeskNew5    = []byte{0xc3, 0xff, 0, 0, 0, 3, 4, 0xaa, 0xbb} // OpenPGP format, 5-octet length
	seipd1       = []byte{0xd2, 4, 1, 0xde, 0xad, 0xbe}
	seipd2       = []byte{0xd2, 4, 2, 0xde, 0xad, 0xbe}
	seipd2Long   = append([]byte{0xd2, 0xc0, 0x08}, bytes.Repeat([]byte{2}, 200)...) // 2-octet length 200
	// Partial lengths: 2 octets, 1 octet, then a final part of 3.
	seipdPartial = []byte{0xd2, 0xe1, 1, 0xaa, 0xe0, 0xbb, 3, 1, 2, 3}
	literal      = []byte{0xcb, 3, 'b', 0, 0}
	compressed   = []byte{0xc8, 2, 1, 0}
	marker       = []byte{0xca, 3, 'P', 'G', 'P'}
	sedLegacyInd = []byte{0xa7, 1, 2, 3, 4} // tag 9, indeterminate length
)

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestCheckPackets(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		want    filter.Packets
		wantErr string
	}{
		{"SEIPD v1 alone", seipd1, filter.Packets{SEIPDVersion: 1}, ""},
		{"PKESK, SEIPD v2", cat(pkeskNew, seipd2), filter.Packets{SEIPDVersion: 2, ESKs: 1}, ""},
		{"legacy 1-octet", cat(pkeskLegacy1, seipd1), filter.Packets{SEIPDVersion: 1, ESKs: 1, Legacy: true}, ""},
		{"legacy 2-octet", cat(pkeskLegacy2, seipd1), filter.Packets{SEIPDVersion: 1, ESKs: 1, Legacy: true}, ""},
		{"legacy 4-octet", cat(pkeskLegacy4, pkeskLegacy1, seipd1), filter.Packets{SEIPDVersion: 1, ESKs: 2, Legacy: true}, ""},
		{"5-octet length", cat(skeskNew5, seipd2), filter.Packets{SEIPDVersion: 2, ESKs: 1}, ""},
		{"2-octet length", cat(pkeskNew, seipd2Long), filter.Packets{SEIPDVersion: 2, ESKs: 1}, ""},
		{"partial lengths", cat(pkeskLegacy1, seipdPartial), filter.Packets{SEIPDVersion: 1, ESKs: 1, Legacy: true, Partial: true}, ""},

		{"empty", nil, filter.Packets{}, "no SEIPD"},
		{"ESK only", pkeskNew, filter.Packets{ESKs: 1}, "no SEIPD"},
		{"literal data", literal, filter.Packets{}, "tag 11"},
		{"compressed", compressed, filter.Packets{}, "tag 8"},
		{"marker first", cat(marker, seipd1), filter.Packets{}, "tag 10"},
		{"packet after SEIPD", cat(pkeskNew, seipd1, marker), filter.Packets{SEIPDVersion: 1, ESKs: 1}, "after the SEIPD"},
		{"two SEIPD", cat(seipd1, seipd1), filter.Packets{SEIPDVersion: 1}, "after the SEIPD"},
		{"SEIPD v3", []byte{0xd2, 2, 3, 0}, filter.Packets{}, "version 3"},
		{"SEIPD without body", []byte{0xd2, 0}, filter.Packets{}, "without version"},
		{"SED, legacy indeterminate", cat(pkeskLegacy1, sedLegacyInd), filter.Packets{ESKs: 1, Legacy: true}, "tag 9"},
		{"ESK indeterminate", []byte{0x87, 3, 1, 2}, filter.Packets{ESKs: 1, Legacy: true}, "no SEIPD"},
		{"truncated header", cat(pkeskNew, []byte{0xd2, 0xff, 0, 0}), filter.Packets{ESKs: 1}, "truncated"},
		{"truncated 2-octet length", []byte{0xd2, 0xc0}, filter.Packets{}, "truncated"},
		{"truncated body", cat(pkeskNew, seipd1[:4]), filter.Packets{SEIPDVersion: 1, ESKs: 1}, "truncated"},
		{"truncated partial", seipdPartial[:6], filter.Packets{Partial: true, SEIPDVersion: 1}, "truncated"},
		{"partial ESK", []byte{0xc1, 0xe0, 3, 1, 3, 1, 2, 3}, filter.Packets{}, "partial"},
		{"not a header", []byte{0x12, 0x34}, filter.Packets{}, "not a packet header"},
		{"reserved tag", []byte{0xc0, 0}, filter.Packets{}, "reserved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := filter.CheckPackets(bytes.NewReader(tt.data))
			if tt.wantErr == "" && err != nil {
				t.Fatalf("error %v, want none", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzCheckPackets(f *testing.F) {
	for _, seed := range [][]byte{seipd1, cat(pkeskLegacy2, seipdPartial), cat(skeskNew5, seipd2Long), sedLegacyInd} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := filter.CheckPackets(bytes.NewReader(data))
		if err == nil && p.SEIPDVersion != 1 && p.SEIPDVersion != 2 {
			t.Fatalf("accepted %x with SEIPD version %d", data, p.SEIPDVersion)
		}
	})
}
