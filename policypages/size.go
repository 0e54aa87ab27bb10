package policypages

import (
	"strconv"
	"strings"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// sizeSuffixes are the suffixes parseSize reads, in upper case, with the
// power of two each stands for.
var sizeSuffixes = map[string]int{
	"": 0, "B": 0,
	"K": 10, "KB": 10, "KIB": 10,
	"M": 20, "MB": 20, "MIB": 20,
	"G": 30, "GB": 30, "GIB": 30,
	"T": 40, "TB": 40, "TIB": 40,
}

// sizeUnits are the binary units sizes are written in, each 1024 times the
// one before.
var sizeUnits = [...]string{"B", "KiB", "MiB", "GiB", "TiB"}

// parseSize reads a size as the relay's config writes it: a number of
// bytes, or a number with a suffix in Dovecot's notation, where K, M, G
// and T (also written KB, MB, …, KiB, MiB, …, in any case) are powers of
// 1024. Spaces around and between are allowed.
func parseSize(s string) (uint64, bool) {
	s = strings.TrimSpace(s)
	digits := len(s) - len(strings.TrimLeft(s, "0123456789"))
	if digits == 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(s[:digits], 10, 64)
	if err != nil {
		return 0, false
	}
	shift, ok := sizeSuffixes[strings.ToUpper(strings.TrimSpace(s[digits:]))]
	if !ok {
		return 0, false
	}
	if n > (1<<64-1)>>shift {
		return 0, false
	}
	return n << shift, true
}

// formatSize writes n bytes in the largest binary unit it fills at least
// once, with one decimal at most, cut rather than rounded so that a limit
// is never overstated: "30 MiB", "1.5 GiB". decimal is the decimal mark.
func formatSize(n uint64, decimal string) string {
	unit := 0
	for unit+1 < len(sizeUnits) && n>>(10*(unit+1)) > 0 {
		unit++
	}
	whole := n >> (10 * unit)
	rest := n - whole<<(10*unit)
	s := strconv.FormatUint(whole, 10)
	if unit > 0 {
		if tenth := rest * 10 >> (10 * unit); tenth > 0 {
			s += decimal + strconv.FormatUint(tenth, 10)
		}
	}
	return s + " " + sizeUnits[unit]
}

// decimalPoint holds the languages that write a decimal point; the others
// write a decimal comma.
var decimalPoint = map[string]bool{"AR": true, "EN": true, "FA": true, "HE": true, "JA": true, "KO": true, "ZH": true}

// sizeFilter is the template filter size: {{ config.max_message_size | size }}
// writes a number of bytes, or a size in Dovecot's notation such as
// max_mailbox_size's "500M", as formatSize does. A value it cannot read is
// written as it is.
func sizeFilter(decimal string) exec.FilterFunction {
	return func(e *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
		if in.IsError() {
			return in
		}
		if err := params.Take(); err != nil {
			return exec.AsValue(exec.ErrInvalidCall(err))
		}
		var n uint64
		ok := false
		switch {
		case in.IsInteger() && in.Integer() >= 0:
			n, ok = uint64(in.Integer()), true
		case in.IsString():
			n, ok = parseSize(in.String())
		}
		if !ok {
			return in
		}
		return exec.AsValue(formatSize(n, decimal))
	}
}
