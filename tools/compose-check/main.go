// compose-check loads compose files the way `docker compose config` does
// (compose-spec/compose-go, the loader of Compose v2), without a Docker
// engine: schema, interpolation (a required `${VAR:?…}` that is unset fails
// with its message) and references. Used by test/compose/compose-file.test.ts.
//
//	compose-check FILE...   prints the resolved project as YAML; exit 1 with the loader's error
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-check FILE...")
		os.Exit(2)
	}
	opts, err := cli.NewProjectOptions(os.Args[1:], cli.WithOsEnv, cli.WithWorkingDirectory("."), cli.WithName("integration-agent"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := project.MarshalYAML()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Stdout.Write(out)
}
