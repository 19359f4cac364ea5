package fuzzcorpus

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"a": "go test fuzz v1\nbool(true)\nstring(\"{\\\"q\\\":\\\"x\\\"}\\x00\")\n",
		"b": "go test fuzz v1\nstring(\"a.b.c\")\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]any{{true, "{\"q\":\"x\"}\x00"}, {"a.b.c"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Read = %#v, want %#v", got, want)
	}
}

func TestReadRefusesWhatItCannotRead(t *testing.T) {
	for name, text := range map[string]string{
		"no header":    "bool(true)\n",
		"unknown type": "go test fuzz v1\nint(3)\n",
		"bad quoting":  "go test fuzz v1\nstring(\"x)\n",
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "corpus file") {
			t.Errorf("%s: err = %v, want an error naming the corpus file", name, err)
		}
	}
}
