package policy_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mxgate/gatewayd/policy"
)

func loadRules(t *testing.T, yaml string) (*policy.Engine, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return policy.Load(dir)
}
