// Package fuzzcorpus reads the seed corpus files of a Go fuzz target
// (testdata/fuzz/FuzzX/*, format "go test fuzz v1"), so that a fuzz target
// kept in a small package can share its corpus with an ordinary test that
// runs the same inputs through the whole server.
package fuzzcorpus

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Read returns the inputs of every file in dir, in file-name order (as
// os.ReadDir gives them); each
// input holds one value per fuzz argument. Only bool and string arguments
// are understood (what this project's targets take); anything else is an
// error naming the file.
func Read(dir string) ([][]any, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read corpus: %w", err)
	}
	var inputs [][]any
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read corpus: %w", err)
		}
		in, err := parse(string(b))
		if err != nil {
			return nil, fmt.Errorf("corpus file %s: %w", path, err)
		}
		inputs = append(inputs, in)
	}
	return inputs, nil
}

func parse(text string) ([]any, error) {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) == 0 || lines[0] != "go test fuzz v1" {
		return nil, fmt.Errorf(`does not start with "go test fuzz v1"`)
	}
	var in []any
	for _, l := range lines[1:] {
		typ, arg, ok := strings.Cut(l, "(")
		if !ok || !strings.HasSuffix(arg, ")") {
			return nil, fmt.Errorf("line %q is not type(value)", l)
		}
		arg = strings.TrimSuffix(arg, ")")
		switch typ {
		case "string":
			s, err := strconv.Unquote(arg)
			if err != nil {
				return nil, fmt.Errorf("line %q: %w", l, err)
			}
			in = append(in, s)
		case "bool":
			v, err := strconv.ParseBool(arg)
			if err != nil {
				return nil, fmt.Errorf("line %q: %w", l, err)
			}
			in = append(in, v)
		default:
			return nil, fmt.Errorf("line %q: type %s is not supported", l, typ)
		}
	}
	return in, nil
}
