// composecheck loads a compose file the way Docker Compose does, with compose-go (the Compose
// Specification's reference loader): schema validation, interpolation, normalization. It
// prints the loaded project as JSON on stdout, or one line on stderr and exits 1 when the file
// does not load. tests/e2e/test_compose.py checks deploy/compose.yaml with it.
//
//	composecheck FILE
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: composecheck FILE")
		os.Exit(2)
	}
	file, err := filepath.Abs(os.Args[1])
	if err == nil {
		var opts *cli.ProjectOptions
		opts, err = cli.NewProjectOptions([]string{file}, cli.WithWorkingDirectory(filepath.Dir(file)),
			cli.WithInterpolation(true), cli.WithResolvedPaths(true))
		if err == nil {
			var out []byte
			p, lerr := opts.LoadProject(context.Background())
			if err = lerr; err == nil {
				if out, err = json.Marshal(p); err == nil {
					_, err = os.Stdout.Write(append(out, '\n'))
				}
			}
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "composecheck: %v\n", err)
		os.Exit(1)
	}
}
