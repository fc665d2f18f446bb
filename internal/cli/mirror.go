package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/manifests"
	"regcred.dev/regcred/internal/mirror"
	"regcred.dev/regcred/internal/registry"
)

type mirrorOptions struct {
	to            string
	imagesFiles   []string
	manifestFiles []string
	dockerConfigs []string
	secrets       []string
	toUsername    string
	toPassword    string
	toPassStdin   bool
	jobs          int
	kube          kubeFlags
	reg           *registryFlags
}

const mirrorLong = `Copy images into a private registry: every platform of a multi-platform
image, by digest, with the tag kept. Blobs and manifests already there are
not copied again, so an interrupted run picks up where it stopped.

Images come from arguments, --images-file (one per line, # comments) and
-f (manifests: files, directories or - for stdin, as "regcred manifests
images" lists them). Each source registry gets its own path under the
destination: docker.io/library/nginx:1.27 goes to
REGISTRY/PREFIX/docker.io/library/nginx:1.27. At the end regcred prints the
--mirror rules that point manifests (or a ClusterImageMirror) at the copies.

Credentials for both sides come from --docker-config files and --secret
pull Secrets, chosen per registry as the kubelet would; --to-username with
--to-password-file or --to-password-stdin set the destination's.

Exit status: 0 when every image is in place, 1 when any failed (each is
named with the reason), 2 on invalid input.`

func newMirrorCommand(s Streams, reg *registryFlags) *cobra.Command {
	o := mirrorOptions{reg: reg}
	cmd := &cobra.Command{
		Use:   "mirror --to REGISTRY[/PREFIX] [IMAGE...]",
		Short: "Copy images into a private registry, for air-gapped clusters",
		Long:  mirrorLong,
		Example: `  helm template shop ./chart | regcred mirror --to harbor.internal/mirror -f - \
    --to-username 'robot$mirror' --to-password-file robot.token
  regcred mirror --to registry.local:5000 nginx:1.27 ghcr.io/acme/api:2.0 --docker-config ~/.docker/config.json`,
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), s, args) },
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func (o *mirrorOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.to, "to", "", "destination registry and optional path prefix (required)")
	f.StringArrayVar(&o.imagesFiles, "images-file", nil, "a file listing images, one per line (repeatable)")
	f.StringArrayVarP(&o.manifestFiles, "filename", "f", nil, "manifests to take the images from: file, directory or - (repeatable)")
	f.StringArrayVar(&o.dockerConfigs, "docker-config", nil, "a docker config file with credentials for source and destination registries (repeatable)")
	f.StringArrayVar(&o.secrets, "secret", nil, "a pull Secret NAMESPACE/NAME in the cluster with credentials (repeatable)")
	f.StringVar(&o.toUsername, "to-username", "", "user name for the destination")
	f.StringVar(&o.toPassword, "to-password-file", "", "file holding the destination password or token")
	f.BoolVar(&o.toPassStdin, "to-password-stdin", false, "read the destination password or token from stdin")
	o.reg.addCAFiles(f, "ca-file", "PEM CA certificates to trust for the registries, added to the system's (repeatable)")
	f.IntVar(&o.jobs, "jobs", 4, "images copied at once")
	o.kube.addFlags(f, false)
}

func (o *mirrorOptions) run(ctx context.Context, s Streams, args []string) error {
	dest, err := o.validate()
	if err != nil {
		return err
	}
	plan, err := o.plan(s.In, args, dest)
	if err != nil {
		return err
	}
	kc, err := o.keychain(ctx, s.In, dest)
	if err != nil {
		return err
	}
	opts, err := o.reg.options()
	if err != nil {
		return err
	}
	progress := newMirrorProgress(s.Err, len(plan.Jobs))
	defer progress.stop()
	results := registry.Mirror(ctx, plan, append(opts, registry.WithKeychain(kc),
		registry.WithJobs(4), registry.WithConcurrency(o.jobs), registry.WithObserver(progress))...)
	progress.stop()
	if failed := printMirrorSummary(s.Out, plan, results); failed > 0 {
		return &silentError{code: exitFailure}
	}
	return nil
}

// validate checks the flags and returns the normalized destination.
func (o *mirrorOptions) validate() (string, error) {
	if o.to == "" {
		return "", usageErrorf("--to is required")
	}
	dest, err := mirror.NormalizeMirror(o.to)
	if err != nil {
		return "", usageErrorf("--to %v: give a registry host with an optional path, like harbor.internal/mirror", err)
	}
	if o.jobs < 1 {
		return "", usageErrorf("--jobs must be at least 1")
	}
	if o.toPassStdin && o.toPassword != "" {
		return "", usageErrorf("give only one of --to-password-file and --to-password-stdin")
	}
	if (o.toPassStdin || o.toPassword != "") != (o.toUsername != "") {
		return "", usageErrorf("--to-username goes with --to-password-file or --to-password-stdin")
	}
	for _, mf := range o.manifestFiles {
		if mf == "-" && o.toPassStdin {
			return "", usageErrorf("stdin cannot carry both manifests (-f -) and the password (--to-password-stdin)")
		}
	}
	return dest, nil
}

func (o *mirrorOptions) plan(in io.Reader, args []string, dest string) (*registry.MirrorPlan, error) {
	images, err := o.collectImages(in, args)
	if err != nil {
		return nil, err
	}
	if len(images) == 0 {
		return nil, usageErrorf("no images: give them as arguments, --images-file or -f")
	}
	plan, err := registry.PlanMirror(images, dest)
	if err != nil {
		return nil, &usageError{err}
	}
	return plan, nil
}

// keychain chooses credentials per registry as the kubelet would, from the
// docker configs and pull Secrets; the destination's own user comes first.
func (o *mirrorOptions) keychain(ctx context.Context, in io.Reader, dest string) (*registry.Keychain, error) {
	kc := &registry.Keychain{Overrides: map[string]authn.Authenticator{}}
	for _, p := range o.dockerConfigs {
		cfg, err := readDockerConfigFile(p)
		if err != nil {
			return nil, err
		}
		kr := &keyring.Keyring{}
		kr.Add(p, cfg)
		kc.Keyrings = append(kc.Keyrings, kr)
	}
	if len(o.secrets) > 0 {
		cf := credFlags{secrets: o.secrets, kube: o.kube}
		if err := cf.validate(); err != nil {
			return nil, err
		}
		set, err := cf.load(ctx)
		if err != nil {
			return nil, err
		}
		if set.Malformed != nil {
			return nil, &usageError{set.Malformed}
		}
		kc.Keyrings = append(kc.Keyrings, set.PullSecrets)
	}
	if o.toUsername != "" {
		pass, err := readPassword(in, o.toPassStdin, o.toPassword, "--to-password-file")
		if err != nil {
			return nil, err
		}
		host := strings.SplitN(dest, "/", 2)[0]
		kc.Overrides[host] = &authn.Basic{Username: o.toUsername, Password: pass}
	}
	return kc, nil
}

// printMirrorSummary counts the results, names the failures and prints the
// rules that point manifests at the copies. It returns the failure count.
func printMirrorSummary(out io.Writer, plan *registry.MirrorPlan, results []registry.MirrorResult) int {
	var failed []registry.MirrorResult
	copied, present := 0, 0
	for _, r := range results {
		switch {
		case r.Failure != nil:
			failed = append(failed, r)
		case r.Copy.Skipped:
			present++
		default:
			copied++
		}
	}
	fmt.Fprintf(out, "\n%d images: %d copied, %d already present, %d failed\n", len(results), copied, present, len(failed))
	sort.Slice(failed, func(i, k int) bool { return failed[i].Job.Source < failed[k].Job.Source })
	for _, f := range failed {
		fmt.Fprintf(out, "  failed: %s: %s (%s)\n    %s\n", f.Job.Source, f.Failure.Reason, f.Failure.Hint, f.Failure.Message)
	}
	fmt.Fprintln(out, "\nPoint manifests at the copies with:")
	var flags []string
	for _, r := range plan.Rules {
		flags = append(flags, fmt.Sprintf("--mirror %s=%s", r.Source, r.Mirror))
	}
	fmt.Fprintf(out, "  regcred manifests rewrite %s\n", strings.Join(flags, " "))
	return len(failed)
}

func (o *mirrorOptions) collectImages(in io.Reader, args []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	add := func(img string) error {
		n, err := keyring.NormalizeImage(img)
		if err != nil {
			return &usageError{err}
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, img)
		}
		return nil
	}
	for _, a := range args {
		if err := add(a); err != nil {
			return nil, err
		}
	}
	for _, f := range o.imagesFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, usageErrorf("%v", err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if err := add(line); err != nil {
				return nil, usageErrorf("%s line %d: %v", f, i+1, err)
			}
		}
	}
	if len(o.manifestFiles) > 0 {
		docs, err := readInputs(in, o.manifestFiles)
		if err != nil {
			return nil, &usageError{err}
		}
		images, _, err := manifests.Images(docs)
		if err != nil {
			return nil, &usageError{err}
		}
		for _, img := range images {
			if err := add(img); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// mirrorProgress shows a progress line on a terminal and plain lines
// otherwise.
type mirrorProgress struct {
	w        io.Writer
	terminal bool
	total    int
	finished atomic.Int64
	bytes    atomic.Int64
	mu       sync.Mutex
	quit     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
	start    time.Time
}

func newMirrorProgress(w io.Writer, total int) *mirrorProgress {
	p := &mirrorProgress{w: w, total: total, quit: make(chan struct{}), start: time.Now()}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.terminal = true
		p.wg.Add(1)
		go p.loop()
	}
	return p
}

func (p *mirrorProgress) loop() {
	defer p.wg.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.quit:
			return
		case <-t.C:
			p.mu.Lock()
			fmt.Fprintf(p.w, "\r\033[K[%d/%d] %.1f MiB in %s", p.finished.Load(), p.total, float64(p.bytes.Load())/(1<<20), time.Since(p.start).Round(time.Second))
			p.mu.Unlock()
		}
	}
}

// Started implements registry.MirrorObserver: a channel for one copy's
// byte counts.
func (p *mirrorProgress) Started(registry.MirrorJob) chan<- v1.Update {
	ch := make(chan v1.Update, 16)
	go func() {
		var last int64
		for u := range ch {
			p.bytes.Add(u.Complete - last)
			last = u.Complete
		}
	}()
	return ch
}

// Finished implements registry.MirrorObserver: a line per image.
func (p *mirrorProgress) Finished(r registry.MirrorResult) {
	p.finished.Add(1)
	switch {
	case r.Failure != nil:
		p.printf("FAILED   %s: %s: %s\n", r.Job.Source, r.Failure.Reason, r.Failure.Hint)
	case r.Copy.Skipped:
		p.printf("present  %s = %s\n", r.Job.Dest, shortDigest(r.Copy.Digest))
	default:
		plat := ""
		if r.Copy.Platforms > 0 {
			plat = fmt.Sprintf(", %d platforms", r.Copy.Platforms)
		}
		p.printf("copied   %s -> %s (%s%s)\n", r.Job.Source, r.Job.Dest, shortDigest(r.Copy.Digest), plat)
	}
}

func (p *mirrorProgress) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminal {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, format, args...)
}

func (p *mirrorProgress) stop() {
	p.once.Do(func() {
		close(p.quit)
		p.wg.Wait()
		if p.terminal {
			fmt.Fprint(p.w, "\r\033[K")
		}
	})
}
