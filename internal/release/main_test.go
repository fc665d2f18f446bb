package release_test

import (
	"os"
	"testing"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/testenv/controlplane"
	"regcred.dev/regcred/internal/testenv/testsuite"
)

var suite = testsuite.New(controlplane.WithSchemeAdder(v1alpha1.AddToScheme))

func TestMain(m *testing.M) { os.Exit(suite.Run(m)) }
