// Package rules holds the rule files the gateway ships: *.yaml rules and
// the lists/ they use, loaded by the policy package (policy.Load). There is
// no Go code here; rules_test.go loads the files and exercises every rule.
package rules
