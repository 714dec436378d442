package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"

	"github.com/mxgate/gatewayd/greylist"
)

// greylistConfigLoader reads the greylist block of the gateway
// configuration file named by -config. main.go may replace it with the
// config package's loader; the default reads the file's top-level
// "greylist:" key.
var greylistConfigLoader = func(path string) (greylist.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return greylist.Config{}, fmt.Errorf("config: %w", err)
	}
	var doc struct {
		Greylist *greylist.Config `yaml:"greylist"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return greylist.Config{}, fmt.Errorf("config: %s: %w", path, err)
	}
	if doc.Greylist == nil {
		return greylist.DefaultConfig(), nil
	}
	return *doc.Greylist, nil
}

// greylistDefaultConfigPath is the -config default; main.go may set it to
// the daemon's own default. Empty means no file.
var greylistDefaultConfigPath = ""

const greylistUsage = `usage: gatewayd greylist COMMAND [flags] ARGS

Commands:
  show    [flags] NETWORK [SENDER RECIPIENT]   state of a network, or of one triplet
  release [flags] NETWORK [SENDER RECIPIENT]   let a triplet, or every pending triplet
                                               of a network, pass on its next attempt
  allow   [flags] -for DURATION NETWORK        allow-list a network (-for 0 removes)
  counts  [flags]                              count triplets and allowed networks

NETWORK is an address (grouped like a client: /24 or /64 by default) or a
CIDR of that size. SENDER "" or "<>" is the null sender.

The store is reached either through a running gateway's admin listener
(-admin http://127.0.0.1:PORT, required for the in-process memory store),
or directly in Redis (-redis, or the greylist.redis block of -config).
A Redis password is read from $GATEWAYD_REDIS_PASSWORD, never from a flag.

Exit status: 0 done, 1 failed (the store or gateway did not answer, the
configuration file did not load), 2 usage error (flags, arguments, NETWORK).

Flags:
`

// runGreylist runs `gatewayd greylist ...` with args after "greylist".
// It returns the process exit code: 0 done, 1 failed, 2 usage error.
func runGreylist(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, greylistUsage)
		newGreylistFlags(stderr).fs.PrintDefaults()
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd := args[0]
	var npos []int // allowed numbers of positional arguments
	switch cmd {
	case "show", "release":
		npos = []int{1, 3}
	case "allow":
		npos = []int{1}
	case "counts":
		npos = []int{0}
	default:
		fmt.Fprintf(stderr, "gatewayd greylist: unknown command %q\n", cmd)
		fmt.Fprint(stderr, greylistUsage)
		return 2
	}
	f := newGreylistFlags(stderr)
	pos, err := f.parse(args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "gatewayd greylist %s: %v\n", cmd, err)
		return 2
	}
	okN := false
	for _, n := range npos {
		okN = okN || len(pos) == n
	}
	if !okN {
		fmt.Fprintf(stderr, "gatewayd greylist %s: wrong number of arguments\n", cmd)
		fmt.Fprint(stderr, greylistUsage)
		return 2
	}
	if cmd == "allow" && !f.forSet {
		fmt.Fprintln(stderr, "gatewayd greylist allow: -for DURATION is required (-for 0 removes an allow)")
		return 2
	}

	op, closeOp, err := f.operator()
	if err != nil {
		fmt.Fprintf(stderr, "gatewayd greylist %s: %v\n", cmd, err)
		// A configuration file that does not load or a store that does
		// not open is a failure, as for the other subcommands; only
		// flags that do not go together are a usage error.
		if errors.As(err, new(greylistUsageError)) {
			return 2
		}
		return 1
	}
	defer closeOp()

	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	var q greylist.Query
	if len(pos) > 0 {
		q.Network = pos[0]
	}
	if len(pos) == 3 {
		q.Sender, q.Recipient = pos[1], pos[2]
		if q.Recipient == "" {
			fmt.Fprintf(stderr, "gatewayd greylist %s: empty recipient\n", cmd)
			return 2
		}
	}

	var out any
	switch cmd {
	case "show":
		out, err = op.Show(ctx, q)
	case "release":
		out, err = op.Release(ctx, q)
	case "allow":
		out, err = op.Allow(ctx, q, f.allowFor.D())
	case "counts":
		out, err = op.Counts(ctx)
	}
	if err != nil {
		fmt.Fprintf(stderr, "gatewayd greylist %s: %v\n", cmd, err)
		if errors.Is(err, greylist.ErrBadQuery) {
			return 2
		}
		return 1
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "gatewayd greylist %s: %v\n", cmd, err)
			return 1
		}
		return 0
	}
	printGreylist(stdout, out)
	return 0
}

// greylistFlags are the flags every subcommand takes.
type greylistFlags struct {
	fs           *flag.FlagSet
	config       string
	admin        string
	redis        string
	redisMaster  string
	redisCluster bool
	redisUser    string
	redisDB      int
	keyPrefix    string
	ipv4, ipv6   int
	timeout      time.Duration
	json         bool
	allowFor     greylist.Duration
	forSet       bool
	set          map[string]bool
}

func newGreylistFlags(stderr io.Writer) *greylistFlags {
	f := &greylistFlags{fs: flag.NewFlagSet("gatewayd greylist", flag.ContinueOnError)}
	fs := f.fs
	fs.SetOutput(stderr)
	// "greylist show -h" and a bad flag print the commands and
	// arguments too, not only the flags.
	fs.Usage = func() {
		fmt.Fprint(stderr, greylistUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&f.config, "config", greylistDefaultConfigPath, "gateway configuration `file` (its greylist block: prefixes, redis)")
	fs.StringVar(&f.admin, "admin", "", "running gateway's admin `URL`, e.g. http://127.0.0.1:9025 (metrics.listen)")
	fs.StringVar(&f.redis, "redis", "", "Redis `addrs`, comma-separated: the node, the Sentinels (with -redis-master) or cluster seeds (with -redis-cluster)")
	fs.StringVar(&f.redisMaster, "redis-master", "", "Sentinel master `name`")
	fs.BoolVar(&f.redisCluster, "redis-cluster", false, "Redis is a cluster")
	fs.StringVar(&f.redisUser, "redis-user", "", "Redis ACL `user`")
	fs.IntVar(&f.redisDB, "redis-db", 0, "Redis database `number`")
	fs.StringVar(&f.keyPrefix, "key-prefix", "", "greylist key `prefix` in Redis")
	fs.IntVar(&f.ipv4, "ipv4-prefix", 0, "IPv4 grouping `bits` (default from config, else 24)")
	fs.IntVar(&f.ipv6, "ipv6-prefix", 0, "IPv6 grouping `bits` (default from config, else 64)")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "give up after this `duration`")
	fs.BoolVar(&f.json, "json", false, "print JSON")
	fs.Func("for", "allow: how long, e.g. 24h or 7d (0 removes)", func(s string) error {
		f.forSet = true
		if err := f.allowFor.UnmarshalText([]byte(s)); err != nil {
			return err
		}
		// A negative duration would remove the allow as 0 does: a
		// typo, not a way to ask for that.
		if f.allowFor < 0 {
			return errors.New("negative duration (-for 0 removes an allow)")
		}
		return nil
	})
	return f
}

// parse reads flags and positional arguments in any order.
func (f *greylistFlags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.fs.Parse(args); err != nil {
			return nil, err
		}
		rest := f.fs.Args()
		if len(rest) == 0 {
			break
		}
		if rest[0] == "--" {
			pos = append(pos, rest[1:]...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	f.set = map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	return pos, nil
}

// greylistUsageError is an error of the flags given, not of the store
// or the configuration they name: exit status 2.
type greylistUsageError struct{ error }

// operator builds the Operator the flags name.
func (f *greylistFlags) operator() (greylist.Operator, func(), error) {
	direct := f.redis != "" || f.set["redis-master"] || f.set["redis-cluster"]
	if f.admin != "" {
		if direct {
			return nil, nil, greylistUsageError{errors.New("-admin and -redis exclude each other")}
		}
		ac, err := greylist.NewAdminClient(f.admin, nil)
		if err != nil {
			return nil, nil, greylistUsageError{err}
		}
		return ac, func() {}, nil
	}

	cfg := greylist.DefaultConfig()
	if f.config != "" {
		c, err := greylistConfigLoader(f.config)
		if err != nil {
			return nil, nil, err
		}
		cfg = c
	}
	r := &cfg.Redis
	if f.redis != "" {
		r.Addrs = strings.Split(f.redis, ",")
	}
	if f.set["redis-master"] {
		r.MasterName = f.redisMaster
	}
	if f.set["redis-cluster"] {
		r.Cluster = f.redisCluster
	}
	if f.set["redis-user"] {
		r.Username = f.redisUser
	}
	if f.set["redis-db"] {
		r.DB = f.redisDB
	}
	if f.set["key-prefix"] {
		r.KeyPrefix = f.keyPrefix
	}
	if p := os.Getenv("GATEWAYD_REDIS_PASSWORD"); p != "" {
		r.Password = p
	}
	if f.ipv4 != 0 {
		cfg.IPv4Prefix = f.ipv4
	}
	if f.ipv6 != 0 {
		cfg.IPv6Prefix = f.ipv6
	}
	if len(r.Addrs) == 0 {
		return nil, nil, greylistUsageError{errors.New("no store: give -redis (or -config with greylist.redis), " +
			"or -admin http://127.0.0.1:PORT for a gateway on the in-process memory store")}
	}
	if err := cfg.Validate(); err != nil {
		// The flags' values (-ipv4-prefix 99) or the file's.
		return nil, nil, greylistUsageError{err}
	}
	// go-redis logs every failed dial on stderr, in its own format,
	// before the operation fails; the command's one error line says it.
	redis.SetLogger(quietRedisLog{})
	g, err := greylist.Open(cfg)
	if err != nil {
		return nil, nil, err
	}
	return g, func() { _ = g.Close() }, nil
}

// printGreylist writes a result for people.
func printGreylist(w io.Writer, v any) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	defer tw.Flush()
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	switch v := v.(type) {
	case greylist.State:
		fmt.Fprintf(tw, "network\t%s\n", v.Network)
		if !v.OperatorAllowedUntil.IsZero() {
			fmt.Fprintf(tw, "operator allow until\t%s\n", ts(v.OperatorAllowedUntil))
		}
		if !v.AutoAllowedUntil.IsZero() {
			fmt.Fprintf(tw, "auto-allowed until\t%s\n", ts(v.AutoAllowedUntil))
		}
		fmt.Fprintf(tw, "passes counted\t%d (last %s)\n", v.Passes, ts(v.LastCounted))
		more := ""
		if v.Truncated {
			more = " (list truncated)"
		}
		fmt.Fprintf(tw, "triplets\t%d%s\n", len(v.Triplets), more)
		if len(v.Triplets) > 0 {
			fmt.Fprintln(tw, "\nSTATUS\tSENDER\tRECIPIENT\tFIRST SEEN\tRETRY AT\tPASSED AT\tEXPIRES")
			for _, t := range v.Triplets {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Status, t.Sender, t.Recipient,
					ts(t.FirstSeen), ts(t.RetryAt), ts(t.PassedAt), ts(t.ExpiresAt))
			}
		}
	case greylist.Released:
		fmt.Fprintf(tw, "released %d triplet(s) in %s\n", v.Released, v.Network)
	case greylist.Allowance:
		if v.Until.IsZero() {
			fmt.Fprintf(tw, "operator allow removed for %s\n", v.Network)
		} else {
			fmt.Fprintf(tw, "%s allowed until %s\n", v.Network, ts(v.Until))
		}
	case greylist.Counts:
		fmt.Fprintf(tw, "triplets\t%d\n", v.Triplets)
		fmt.Fprintf(tw, "  pending\t%d\n", v.Pending)
		fmt.Fprintf(tw, "  passed\t%d\n", v.Passed)
		fmt.Fprintf(tw, "auto-allowed networks\t%d\n", v.AutoAllowedNetworks)
		fmt.Fprintf(tw, "networks counting passes\t%d\n", v.CountingNetworks)
		fmt.Fprintf(tw, "operator-allowed networks\t%d\n", v.OperatorAllowedNetworks)
	default:
		fmt.Fprintf(tw, "%+v\n", v)
	}
}

// quietRedisLog drops go-redis's own log lines.
type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}
