package storecopy

import (
	"flag"
	"io"
	"reflect"
	"testing"
)

func TestSplitOwnFlags(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.String("to", "", "")
	fs.String("to-database", "", "")
	fs.Bool("quick", false, "")
	own, rest := splitOwn(fs, []string{"--data-dir", "d", "--to", "mongodb://h/x", "-to-database=y", "--dev", "--quick", "--mongodb-uri", "u", "-h"})
	if want := []string{"--to", "mongodb://h/x", "-to-database=y", "--quick", "-h"}; !reflect.DeepEqual(own, want) {
		t.Errorf("own %q, want %q", own, want)
	}
	if want := []string{"--data-dir", "d", "--dev", "--mongodb-uri", "u"}; !reflect.DeepEqual(rest, want) {
		t.Errorf("rest %q, want %q", rest, want)
	}
}

func TestTargetURIs(t *testing.T) {
	for uri, db := range map[string]string{
		"mongodb://db1:27017,db2:27017,db3:27017/?replicaSet=rs0&w=majority": "",
		"mongodb://u:p@host/site?tls=true":                                   "site",
		"mongodb+srv://cluster.example.org/my%20db":                          "my db",
		"mongodb://host": "",
	} {
		if got := uriDatabase(uri); got != db {
			t.Errorf("uriDatabase(%q) = %q, want %q", uri, got, db)
		}
	}
	for uri, want := range map[string]string{
		"mongodb://user:s3cret@db1:27017,db2/?replicaSet=rs0": "mongodb://…@db1:27017,db2/?replicaSet=rs0",
		"mongodb+srv://cluster.example.org":                   "mongodb+srv://cluster.example.org",
	} {
		if got := redact(uri); got != want {
			t.Errorf("redact(%q) = %q, want %q", uri, got, want)
		}
	}
	if !(Target{To: "mongodb+srv://x"}).IsMongoDB() || (Target{To: "./mongodb"}).IsMongoDB() {
		t.Error("IsMongoDB")
	}
}
