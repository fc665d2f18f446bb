package cli

import (
	"slices"

	"github.com/spf13/pflag"

	"regcred.dev/regcred/internal/registry"
)

// registryFlags are the registry trust the flags of the running command
// set: CA files and plain HTTP. The root makes one value and hands it to
// every command that talks to registries; each registers the flags it
// offers with its own help text (all default to the zero value, so the
// commands can share it). The options are built on first use, once, so a
// command that never reaches a registry (doctor without --check) never
// reads the CA files. Time limits stay with the commands: their defaults
// differ.
type registryFlags struct {
	caFiles  []string
	insecure bool

	built bool
	opts  []registry.Option
	err   error
}

// addCAFiles registers a repeatable CA file flag.
func (r *registryFlags) addCAFiles(fs *pflag.FlagSet, name, usage string) {
	fs.StringArrayVar(&r.caFiles, name, nil, usage)
}

// addCAFile registers a CA file flag that takes one file, the last given.
func (r *registryFlags) addCAFile(fs *pflag.FlagSet, name, usage string) {
	fs.Var((*lastFile)(&r.caFiles), name, usage)
}

func (r *registryFlags) addInsecure(fs *pflag.FlagSet, usage string) {
	fs.BoolVar(&r.insecure, "insecure", false, usage)
}

// options are the registry options of the flags; a CA file that cannot be
// read is a usage error.
func (r *registryFlags) options() ([]registry.Option, error) {
	if !r.built {
		r.opts, r.err = r.build()
		r.built = true
	}
	// Clipped, so that a caller appending its own options never writes
	// into the shared slice.
	return slices.Clip(r.opts), r.err
}

func (r *registryFlags) build() ([]registry.Option, error) {
	var opts []registry.Option
	if r.insecure {
		// Only when asked: false is the default, and an explicit false
		// would override what a caller's own options say.
		opts = append(opts, registry.WithInsecure(true))
	}
	if len(r.caFiles) > 0 {
		pool, err := registry.CAPool(r.caFiles)
		if err != nil {
			return nil, &usageError{err}
		}
		opts = append(opts, registry.WithRootCAs(pool))
	}
	return opts, nil
}

// lastFile is a string flag kept as a list of at most one file, so that a
// command taking one CA file shares the storage of those taking several.
type lastFile []string

func (l *lastFile) Set(v string) error {
	*l = nil
	if v != "" {
		*l = []string{v}
	}
	return nil
}

func (l *lastFile) Type() string { return "string" }
func (l *lastFile) String() string {
	if len(*l) == 0 {
		return ""
	}
	return (*l)[0]
}
