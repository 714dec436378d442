// Command smtpload is a small SMTP load generator and sink, in the spirit of
// Postfix's smtp-source and smtp-sink, for benchmarking gatewayd on
// loopback.
//
//	smtpload send    -addr HOST:PORT [-c 10] [-n 5000] [-size 4096 | -msgfile FILE] [-per-conn 1] ...
//	smtpload connect -addr HOST:PORT [-c 10] [-n 5000] [-src 127.0.0.2]
//	smtpload idle    -addr HOST:PORT [-n 10000] [-c 200] [-src 127.0.0.10-127.0.0.209]
//	smtpload sink    [-addr 127.0.0.1:0]
//
// send opens -c concurrent sessions and sends -n messages in all, a new
// connection for each message (-per-conn 1) or up to -per-conn messages per
// connection, and prints one JSON object: messages accepted, failures by
// reply code, elapsed time, rate and per-message latency percentiles.
// Latency is measured from the dial to the reply to the final dot when a
// connection carries one message, and from MAIL to that reply otherwise.
//
// connect opens -n connections, reads the greeting and hangs up; it counts
// greetings by reply code (a DNSBL-listed client gets 554 from the gateway).
//
// idle opens -n connections, reads each greeting, sends EHLO, prints one
// JSON line when all are open, and holds them until its standard input is
// closed or it receives SIGTERM.
//
// sink accepts SMTP (go-smtp server: PIPELINING, 250 to everything), discards
// the data and counts messages; it prints "LISTEN host:port" when ready and a
// JSON line with its counters when it receives SIGTERM or SIGINT.
//
// The sender writes SMTP on a raw net.Conn rather than through go-smtp's
// client: on a small machine the load generator shares the CPU with what it
// measures, so it must cost little per message (one write for MAIL, RCPT and
// DATA when the server offers PIPELINING, one write for the pre-stuffed
// message, no per-message allocations beyond the latency sample), and it must
// see exactly when each reply arrives. -src binds the local address of each
// connection, spread over a list or range of loopback addresses, so that a
// large number of connections does not exhaust the ephemeral ports of one
// address, and so that a test can connect from a listed address.
//
// Traffic goes only where -addr says; smtpload refuses any address that is
// not loopback.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "send":
		err = runSend(os.Args[2:])
	case "connect":
		err = runConnect(os.Args[2:])
	case "idle":
		err = runIdle(os.Args[2:])
	case "sink":
		err = runSink(os.Args[2:])
	case "-h", "-help", "--help", "help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "smtpload: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "smtpload %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: smtpload COMMAND [flags]

Commands:
  send      send messages (-c sessions, -n messages, -per-conn messages per connection)
  connect   open connections, read the greeting, hang up; count greetings by code
  idle      open connections, greet and EHLO, hold them until stdin closes
  sink      accept SMTP, answer 250 to everything, discard data, count

Run "smtpload COMMAND -h" for the flags of a command.
`)
}
