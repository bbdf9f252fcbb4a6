// Command promcrds prints the prometheus-operator CRDs as one multi-document YAML stream.
package main

import (
	"fmt"
	"os"

	crd "github.com/prometheus-operator/prometheus-operator/example"
)

func main() {
	if err := crd.PrintAll(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
