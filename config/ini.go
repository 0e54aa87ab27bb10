package config

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// parseSection reads an ini file in the dialect of Python's configparser, as
// chatmail relays write it, and returns the keys of one section. Keys are
// lower-cased; values are trimmed. Lines starting with '#' or ';' are
// comments, "key = value" and "key: value" both work, and an indented line
// continues the value before it.
func parseSection(r io.Reader, section string) (map[string]string, error) {
	params := make(map[string]string)
	var (
		current string // section being read
		lastKey string // key an indented line continues
		lineNo  int
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		lineNo++
		raw := strings.TrimSuffix(sc.Text(), "\r")
		line := strings.TrimSpace(raw)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			lastKey = ""
			continue
		case raw[0] == ' ' || raw[0] == '\t':
			if lastKey == "" {
				return nil, fmt.Errorf("line %d: indented line continues nothing", lineNo)
			}
			if current == section {
				params[lastKey] = strings.TrimSpace(params[lastKey] + "\n" + line)
			}
			continue
		case line[0] == '[':
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return nil, fmt.Errorf("line %d: section header without ']'", lineNo)
			}
			current = strings.TrimSpace(line[1:end])
			lastKey = ""
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i <= 0 {
			return nil, fmt.Errorf("line %d: expected \"key = value\"", lineNo)
		}
		if current == "" {
			return nil, fmt.Errorf("line %d: key outside of any section", lineNo)
		}
		lastKey = strings.ToLower(strings.TrimSpace(line[:i]))
		if current == section {
			params[lastKey] = strings.TrimSpace(line[i+1:])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return params, nil
}
