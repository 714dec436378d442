package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/mxgate/gatewayd/config"
	"github.com/mxgate/gatewayd/policy"
)

const rulesUsage = `usage: gatewayd rules check [-config FILE] [DIR]

Loads the rule files of DIR (default: the file's rules.dir, else ./rules)
and the lists they declare, as the gateway would, and prints every problem
as FILE:LINE:COLUMN: why. With -config, the zones the rules name are
checked against the file's dnsbl.zones as the daemon checks them (when
the dnsbl check is on); without it, no zone is refused.
Exit status: 0 the rules load, 1 they do not, 2 usage error.
`

// runRules runs `gatewayd rules ...` with args after "rules".
func runRules(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stderr, rulesUsage)
			return 0
		}
		if len(args) > 0 {
			fmt.Fprintf(stderr, "gatewayd rules: unknown command %q (the one command is check)\n", args[0])
		}
		fmt.Fprint(stderr, rulesUsage)
		return 2
	}
	fs := flag.NewFlagSet("gatewayd rules check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, rulesUsage) }
	cfgPath := fs.String("config", "", "configuration file whose dnsbl.zones the rules are checked against")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 1 {
		// Flags go before DIR: "check DIR -config F" is three DIRs.
		fmt.Fprintf(stderr, "gatewayd rules check: one DIR at most, after the flags; got %q\n", fs.Args())
		fmt.Fprint(stderr, rulesUsage)
		return 2
	}
	dir := "rules"
	var opts policy.Options
	if *cfgPath != "" {
		// A rule naming a zone the daemon does not query stops its start;
		// without the file that could not be seen here.
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			fmt.Fprintf(stderr, "gatewayd: %v\n", err)
			return 1
		}
		opts = rulesOptions(cfg)
		if cfg.Rules.Dir != "" {
			dir = cfg.Rules.Dir
		}
	}
	if fs.NArg() == 1 {
		dir = fs.Arg(0)
	}
	e, err := policy.LoadOptions(dir, opts)
	if err != nil {
		var le *policy.LoadError
		if !errors.As(err, &le) {
			fmt.Fprintf(stderr, "gatewayd: %v\n", err)
			return 1
		}
		for _, x := range le.Errors {
			fmt.Fprintln(stderr, x)
		}
		fmt.Fprintf(stderr, "%s: %d %s\n", dir, len(le.Errors), map[bool]string{true: "error", false: "errors"}[len(le.Errors) == 1])
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK, %s\n", dir, e.Summary())
	return 0
}
