// Command consentgraph is the Consentgraph server with every built-in
// processor (see package cmd for the commands, and docs/plugins.md for
// building a server with processors of your own).
//
//	go run .            start with the embedded store under ./data
//	go run . -h         list every setting
package main

import (
	"github.com/consentgraph/consentgraph/cmd"
	_ "github.com/consentgraph/consentgraph/plugins/all" // the built-in processors
)

func main() { cmd.Main() }
