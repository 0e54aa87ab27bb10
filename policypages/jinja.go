package policypages

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/nikolalohinski/gonja/v2/builtins"
	gonjaconfig "github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
	"github.com/nikolalohinski/gonja/v2/parser"

	"filtermail/config"
)

// maxRenderPasses bounds the re-rendering of a page whose output still
// holds template syntax. The relay renders until nothing changes; a page
// that never settles is an error, not a hang.
const maxRenderPasses = 10

// jinja renders templates in Jinja syntax, as the relay does with Python's
// jinja2 and its default settings: no autoescaping, undefined values empty
// and false. Besides jinja2's filters there is size, which writes sizes
// the way the pages do in one language.
type jinja struct {
	env *exec.Environment
	cfg *gonjaconfig.Config
}

// newJinja returns a template engine for pages in the language l.
func newJinja(l config.Language) *jinja {
	decimal := ","
	if decimalPoint[l.Code] {
		decimal = "."
	}
	filters := exec.NewFilterSet(map[string]exec.FilterFunction{"size": sizeFilter(decimal)}).Update(builtins.Filters)
	return &jinja{
		env: &exec.Environment{
			Context:           exec.EmptyContext().Update(builtins.GlobalFunctions).Update(builtins.GlobalVariables),
			Filters:           filters,
			Tests:             builtins.Tests,
			ControlStructures: builtins.ControlStructures,
			Methods:           builtins.Methods,
		},
		cfg: gonjaconfig.New(),
	}
}

// render renders source with vars. name is the file the source came from;
// errors start with it and give the line. Templates cannot include other
// files.
func (j *jinja) render(name, source string, vars map[string]any) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = "", fmt.Errorf("%s: the template engine failed: %v", name, r)
		}
	}()
	id := "/" + name
	loader, err := loaders.NewMemoryLoader(map[string]string{id: source})
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	tpl, err := exec.NewTemplate(id, j.cfg, loader, j.env)
	if err != nil {
		var syntax *parser.SyntaxError
		if errors.As(err, &syntax) && syntax.Line > 0 {
			return "", fmt.Errorf("%s:%d:%d: %s", name, syntax.Line, syntax.Column, syntax.Message)
		}
		if errors.As(err, &syntax) {
			return "", fmt.Errorf("%s: %s", name, syntax.Message)
		}
		return "", fmt.Errorf("%s: %w", name, err)
	}
	out, err = tpl.ExecuteToString(exec.NewContext(vars))
	if err != nil {
		return "", executionError(name, err)
	}
	return out, nil
}

// lineOf finds the line in the engine's execution errors, which come as a
// chain of messages with the innermost cause last.
var lineOf = regexp.MustCompile(`at line (\d+): `)

// executionError shortens an execution error to the file, the line and
// the innermost cause.
func executionError(name string, err error) error {
	msg := err.Error()
	m := lineOf.FindStringSubmatch(msg)
	if m == nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	cause := strings.TrimSpace(msg[strings.LastIndex(msg, ": ")+2:])
	if cause == "" {
		cause = msg
	}
	return fmt.Errorf("%s:%s: %s", name, m[1], cause)
}

// settle renders source again and again until the output stops changing,
// so that template syntax inserted by the first pass is rendered too.
func (j *jinja) settle(name, source string, vars map[string]any) (string, error) {
	for range maxRenderPasses {
		out, err := j.render(name, source, vars)
		if err != nil {
			return "", err
		}
		if out == source {
			return out, nil
		}
		source = out
	}
	return "", fmt.Errorf("%s: still changing after %d renderings", name, maxRenderPasses)
}
