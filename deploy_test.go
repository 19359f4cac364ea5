package main

import (
	"os"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

// compose.yaml is the reference deployment in docs/deploy.md; no Docker
// engine runs here, so check that it still describes what the docs say:
// a three-member replica set, two replicas sharing it with majority writes,
// and secrets taken from the environment rather than written down.
func TestComposeReferenceDeployment(t *testing.T) {
	raw, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Command     any               `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("compose.yaml does not parse: %v", err)
	}
	mongos, replicas := 0, 0
	for name, s := range doc.Services {
		switch {
		case strings.HasPrefix(name, "mongo") && name != "mongo-init":
			mongos++
			if !strings.Contains(strings.Join(toStrings(s.Command), " "), "--replSet rs0") {
				t.Errorf("%s is not a replica set member", name)
			}
		case strings.HasPrefix(name, "consentgraph"):
			replicas++
			uri := s.Environment["CONSENTGRAPH_MONGODB_URI"]
			for _, want := range []string{"replicaSet=rs0", "w=majority", "readPreference=primary", "mongo1", "mongo2", "mongo3"} {
				if !strings.Contains(uri, want) {
					t.Errorf("%s: URI %q lacks %s", name, uri, want)
				}
			}
			if key := s.Environment["CONSENTGRAPH_MASTER_KEY"]; !strings.HasPrefix(key, "${") {
				t.Errorf("%s: master key must come from the environment, got %q", name, key)
			}
		}
	}
	if mongos != 3 || replicas != 2 {
		t.Fatalf("%d MongoDB members and %d Consentgraph replicas; want 3 and 2", mongos, replicas)
	}
}

func toStrings(v any) []string {
	switch c := v.(type) {
	case string:
		return []string{c}
	case []any:
		out := make([]string, 0, len(c))
		for _, e := range c {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
