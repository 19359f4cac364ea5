// Command processor-module is a Consentgraph server with one more
// processor type, "contacts", built out of tree the way a plugin author
// does it: this module imports the server (cmd), optionally the built-in
// processors (plugins/all) and its own plugin, and calls cmd.Main.
//
//	go build -o consentgraph . && ./consentgraph --config config.yaml
package main

import (
	"github.com/consentgraph/consentgraph/cmd"
	_ "github.com/consentgraph/consentgraph/plugins/all" // the built-in processors (optional)

	_ "example.com/processor-module/contacts" // registers the "contacts" type
)

func main() { cmd.Main() }
