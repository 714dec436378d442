// Package policy evaluates the operator's rules: it loads rule files, compiles
// their conditions once, and evaluates a stage of a session to a verdict.
//
// Rules are YAML files in one directory (rules/ in the repository), loaded
// in lexical order of their names; within a file, in the order written.
// A rule names the stage it runs at, a condition and an action:
//
//	lists:
//	  allow_networks: {type: cidr, file: lists/allow_networks.txt}
//	rules:
//	  - name: allow_local_networks
//	    stage: connect
//	    if: in_list("allow_networks", client_ip)
//	    action: accept
//	  - name: zen_sbl_xbl
//	    stage: connect
//	    if: dnsbl_code("zen.spamhaus.org", "127.0.0.2-127.0.0.7")
//	    action: reject
//	    reply:
//	      code: 554
//	      enhanced: 5.7.1
//	      text: 'Blocked: {{ .ZoneReason "zen.spamhaus.org" }}'
//	  - name: spf_fail
//	    stage: mail
//	    if: spf.result == "fail"
//	    action: score
//	    score: 4
//	thresholds:
//	  reject: {score: 9}
//
// # Conditions
//
// Conditions are expressions of github.com/expr-lang/expr, compiled once
// when the rules load. We chose expr because it type-checks an expression
// against a Go struct at compile time (a misspelt variable or a string
// compared with a number is a load error, with its position), runs a
// compact bytecode VM (some 100 ns for a usual condition), needs no CGO,
// and is well maintained. The variables and functions are the
// fields of Env, by their snake_case names: client_ip, client_name, helo,
// tls, mail_from, mail_from_domain, null_sender, rcpt, rcpt_domain, rcpts,
// dnsbl, domainbl, iprev, spf, dkim, dmarc, greylist, size, score, stage;
// header(), headers(), in_list(), ip_in(), dnsbl_listed(), dnsbl_code(),
// dkim_pass_domain(), domain_match(); plus expr's own operators and
// builtins (in, matches, startsWith, endsWith, contains, lower, any, ...).
// A rule without "if" always applies. header(name) is the first value of
// a field, headers(name) the first 1000 (a closure over them stays
// bounded); each name is looked up once per evaluation (the section is
// parsed whole once past the fourth name).
//
// What can never hold is a load error. A variable has a value from the
// stage that gives it on: helo, tls, tls_version and domainbl from helo
// (domainbl[zone]["helo"]); mail_from, mail_from_domain, null_sender and
// spf from mail (domainbl[zone]["mail_from"]); rcpt, rcpt_domain, rcpts
// and greylist from rcpt; header(), headers(), size, dkim,
// dkim_pass_domain(), dmarc and domainbl[zone]["from"] at data. A rule
// may read only what its stage has, a threshold what one of its stages
// has; the same holds for the fields of its texts (.SPF, .HeaderValue).
// A result compared with a literal (spf.result == "Fail", iprev.result in
// ["temp_error"], dnsbl[zone].status, dkim.signatures' result,
// dmarc.result, .policy and .applied, spf.identity, greylist, stage,
// tls_version) must be one of the values the check gives, and the second
// key of domainbl one of helo, mail_from and from. $env is refused.
//
// A condition may not build data without bound (expr's memory budget
// counts list elements, not the size of strings): the range operator
// (1..n) but in x in 1..10 with literal bounds (-5 too) and an x of
// type int (size, an int64, and score, a float, are refused: expr would
// build the list; write x >= 1 && x <= 10), let, and the builtins reduce, map, sortBy, groupBy, repeat,
// replace, join, string, toJSON and toBase64 are refused. The builtins
// allowed are all, none, any, one, filter, find, findIndex, findLast,
// findLastIndex, count, sum, len, type, abs, ceil, floor, round, int,
// float, trim, trimPrefix, trimSuffix, upper, lower, split, splitAfter,
// indexOf, lastIndexOf, hasPrefix, hasSuffix, max, min, mean, median,
// first, last, get, take, keys, values, reverse, uniq, sort, concat,
// flatten, now, duration, date, timezone and the bit functions; a builtin
// of a later expr is refused until it is added to that list. uniq, which
// compares every element with every other, may not take a list the
// sender sizes (headers(), rcpts, split()), and the characters trim
// removes (its second argument) are a literal string. A time zone
// (timezone's argument, date's after the text and layout) is a literal the system knows,
// read once when the rules load (tzpatch.go). Closures
// nest two deep at most, may not run over split or splitAfter of a text
// (nor over a list made from one, reverse(split(...))), and may not
// build texts with + (a copy of the text per element). In a closure over
// a list whose length the sender sets (headers(), rcpts), whose body
// runs up to 1000 times: another such list may only be measured or
// indexed (len, first, last, get, [i]), not run over by a closure, in,
// sort ... (two headers() nested are a million steps); and a text of the
// header that is not the element # (header(), headers()[i], the fields
// of dkim.signatures) may not be given to what costs its length at every
// element: contains, matches and in (on their left), lower, upper, trim,
// split, indexOf, int, date ..., the functions (in_list, domain_match,
// header ...) and a key of a map. It may be compared (==, <, startsWith,
// endsWith) with the element or a short text, which costs the length of
// the shorter. A method may
// be called only on a date (now(), date()) or a duration, and only one
// that gives a number, a boolean, a date or a duration (Hour, Minute,
// Weekday, Year, Month, Day, Unix, Before, After, Equal, Sub, Hours, ...):
// Format and String build a text, doubled at each nesting. The pattern
// of matches must be a literal string: another is compiled at every
// evaluation, and could come from the message.
//
// From the names a stage's conditions and templates use, the engine knows
// which checks they read: Engine.Needs(stage) tells the gateway which
// checks to run or await before evaluating that stage. Engine.EvaluateLazy
// goes further: it asks for a pending check just before the first rule or
// threshold that reads it, so a stage an earlier rule ends never asks.
//
// # Actions
//
// accept ends the stage and lets it pass; the Outcome's Scope says what
// the gateway may skip afterwards (the session after connect and helo,
// the transaction after mail and data, the recipient after rcpt). reject
// (5xx), defer (4xx) and greylist (4xx, rcpt only) end the stage with a
// reply; drop (mail, rcpt, data) and quarantine (data) end it with the
// gateway's 250. score adds points (negative ones too) under the rule's
// name and goes on; add_header (data) adds a header field and goes on;
// continue only records that the rule matched. A greylist verdict asks the
// gateway to consult the greylist store: when the triplet may pass, the
// gateway sets Facts.Greylist ("pass", "allowed", ...) and evaluates the
// rcpt stage again, so the rules after the greylist rule and the
// thresholds still apply: greylist rules and the greylist threshold are
// skipped when Facts.Greylist is set. Reply texts, header values
// and details are text/template templates over TemplateData, parsed and
// checked at load (every field, method and function, in every branch,
// against the stage). They may not loop or call templates (range,
// template, define, block); printf takes a literal format with widths
// and precisions up to 999, none from an argument (*), and a width or
// precision only on a number, a boolean or a string: on a list, a map or
// a structure (padded element by element) it is an error when rendered.
// Only the argument its verb prints is judged, explicit indexes (%[2]d)
// followed: printf "%-20s %v" .Helo .Rcpts is fine. What a template
// writes is cut at 16 KiB.
//
// Replies are checked at load: a reject needs a 5xx code, a defer or
// greylist a 4xx code, the enhanced code's class must match (Reply.Validate),
// and at connect only 554 and 421 may be used (RFC 5321 section 3.1).
// Defaults: reject 550 5.7.1 (554 5.7.1 at connect), defer 451 4.7.1 (421
// 4.7.0 at connect), greylist 451 4.7.1.
//
// # Scores and thresholds
//
// The score of a message is the sum of the points of the score rules that
// matched, over the stages. The engine keeps no state between calls; the
// gateway carries the score:
//
//   - It passes in Facts.Score the score so far; Evaluate returns in
//     Verdict.Score only what this stage added (the sum of the scores in
//     Verdict.Reasons), and in Outcome.Total the two together.
//   - Session score = connect + helo. Each transaction starts from it:
//     at mail, Facts.Score = session score.
//   - Transaction score = session score + mail. At each rcpt,
//     Facts.Score = transaction score; what a rcpt stage adds counts for
//     that recipient only (its rcpt thresholds), and does not carry to
//     other recipients or to data.
//   - At data, Facts.Score = transaction score.
//
// Within a stage, "score" in a condition is Facts.Score plus what the
// rules before it added. Thresholds (the thresholds section: greylist,
// reject, quarantine, add_header, each optional, with an optional extra
// condition) are applied after the rules of a stage that did not end it,
// to the total: reject at rcpt and data, greylist at rcpt, quarantine and
// add_header at data. add_header goes first and does not end the stage;
// then reject, quarantine and greylist, the first that applies.
//
// # Lists
//
// Named lists (cidr, domain, address, regex) are declared in a lists
// section with a file (relative to the rules directory) and/or inline
// entries, and used as in_list("name", value). The list name must be a
// literal naming a declared list; that is checked at load.
//
// # Loading and reloading
//
// Load compiles a directory and reports every problem at once, each with
// file:line:column (*LoadError). Store keeps the current Engine in an
// atomic pointer; Reload and Watch (fsnotify, debounced) replace it only
// with an engine that loaded cleanly.
package policy
