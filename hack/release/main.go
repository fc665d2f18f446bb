// Command release builds regcred's image and release artifacts; the
// Makefile's `image` and `release` targets run it.
//
//	go run ./hack/release image [--layout DIR] [--push REPOSITORY] [--docker-config FILE]
//	go run ./hack/release all --out DIR --helm PATH
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"regcred.dev/regcred/internal/dockercfg/credhelpers"
	"regcred.dev/regcred/internal/keyring"
	"regcred.dev/regcred/internal/registry"
	"regcred.dev/regcred/internal/release"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx := context.Background()
	var err error
	switch os.Args[1] {
	case "image":
		err = imageCmd(ctx, os.Args[2:])
	case "all":
		err = allCmd(ctx, os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  release image [--layout DIR] [--push REPOSITORY] [--docker-config FILE] [--ca-file PEM] [--platforms linux/amd64,linux/arm64]
                [--version V --commit SHA --date UNIX]
      build regcred's image (every platform in one index); write it as an OCI
      layout and/or push it as REPOSITORY:VERSION with the docker config's
      credentials
  release all --out DIR --helm PATH [--base-url URL] [--platforms OS/ARCH,...] [--version V --commit SHA --date UNIX]
      the CLI for linux, darwin and windows on amd64 and arm64 as tar.gz,
      the chart package, the image layout, checksums.txt and krew/regcred.yaml`)
	os.Exit(2)
}

func moduleDir() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run from regcred's source tree")
	}
	return filepath.Dir(mod), nil
}

// versionFlags let a build name its version instead of asking git (a
// source tarball, a test): --version, --commit and --date together.
type versionFlags struct {
	version, commit string
	date            int64
}

func (f *versionFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&f.version, "version", "", "the version to stamp (default: git describe); needs --commit and --date")
	fs.StringVar(&f.commit, "commit", "", "the commit to stamp (with --version)")
	fs.Int64Var(&f.date, "date", 0, "the commit time, Unix seconds: every timestamp of the image (with --version)")
}

// source is the source tree the tool runs in and the version to stamp.
func (f *versionFlags) source(ctx context.Context) (dir string, v release.Version, err error) {
	if dir, err = moduleDir(); err != nil {
		return "", v, err
	}
	if f.version == "" && f.commit == "" && f.date == 0 {
		v, err = release.GitVersion(ctx, dir)
		return dir, v, err
	}
	if f.version == "" || f.commit == "" || f.date <= 0 {
		return "", v, errors.New("--version, --commit and --date go together")
	}
	return dir, release.Version{Version: f.version, Commit: f.commit, Time: time.Unix(f.date, 0).UTC()}, nil
}

func parsePlatforms(list string) ([]release.Platform, error) {
	var ps []release.Platform
	for _, s := range strings.Split(list, ",") {
		p, err := release.ParsePlatform(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func imageCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image", flag.ExitOnError)
	var vf versionFlags
	vf.add(fs)
	layoutDir := fs.String("layout", "", "write the image as an OCI layout to this (new or empty) directory")
	push := fs.String("push", "", "push the image as REPOSITORY:VERSION (REPOSITORY like harbor.internal/platform/regcred)")
	dockerConfig := fs.String("docker-config", "", "docker config with the push credentials (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json)")
	caFile := fs.String("ca-file", "", "PEM CA certificates to trust for the push, added to the system's")
	platforms := fs.String("platforms", "linux/amd64,linux/arm64", "image platforms")
	_ = fs.Parse(args)
	if *layoutDir == "" && *push == "" {
		return errors.New("image: give --layout DIR, --push REPOSITORY or both")
	}
	dir, v, err := vf.source(ctx)
	if err != nil {
		return err
	}
	ps, err := parsePlatforms(*platforms)
	if err != nil {
		return err
	}
	idx, err := release.Image(ctx, release.ImageOptions{ModuleDir: dir, Version: v, Platforms: ps})
	if err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	tag := release.SemVer(v)
	if *layoutDir != "" {
		if err := release.WriteLayout(*layoutDir, idx, tag); err != nil {
			return err
		}
		fmt.Printf("wrote %s (tag %s) to %s\n", digest, tag, *layoutDir)
	}
	if *push != "" {
		host, _, _ := strings.Cut(*push, "/")
		opts, err := pushOptions(*dockerConfig, host, *caFile)
		if err != nil {
			return err
		}
		ref := *push + ":" + tag
		if _, err := registry.PushIndex(ctx, idx, ref, opts...); err != nil {
			return err
		}
		fmt.Printf("pushed %s@%s\n", ref, digest)
	}
	return nil
}

// pushOptions take the destination's credentials from a docker config,
// matched per registry as the kubelet would, like `regcred mirror`.
func pushOptions(dockerConfig, registryHost, caFile string) ([]registry.Option, error) {
	if dockerConfig == "" {
		if d := os.Getenv("DOCKER_CONFIG"); d != "" {
			dockerConfig = filepath.Join(d, "config.json")
		} else if home, err := os.UserHomeDir(); err == nil {
			dockerConfig = filepath.Join(home, ".docker", "config.json")
		}
	}
	var opts []registry.Option
	if _, err := os.Stat(dockerConfig); err == nil {
		// Its credential helper for the destination too (credsStore,
		// credHelpers), as docker push would run it.
		cfg, err := credhelpers.ReadFileForRegistry(dockerConfig, registryHost)
		if err != nil {
			return nil, err
		}
		kr := &keyring.Keyring{}
		kr.Add(dockerConfig, cfg)
		opts = append(opts, registry.WithKeychain(&registry.Keychain{Keyrings: []*keyring.Keyring{kr}}))
	}
	if caFile != "" {
		pool, err := registry.CAPool([]string{caFile})
		if err != nil {
			return nil, err
		}
		opts = append(opts, registry.WithRootCAs(pool))
	}
	return opts, nil
}

func allCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("all", flag.ExitOnError)
	out := fs.String("out", "dist", "release directory (must not exist or be empty)")
	helm := fs.String("helm", "", "the Helm client that packages the chart (make tools builds one)")
	baseURL := fs.String("base-url", release.Source+"/releases/download/{version}", "where the archives are downloaded from, for the krew manifest")
	platforms := fs.String("platforms", "", "the CLI's platforms (default: linux, darwin and windows on amd64 and arm64); the image gets the linux ones")
	var vf versionFlags
	vf.add(fs)
	_ = fs.Parse(args)
	if *helm == "" {
		return errors.New("all: --helm PATH is required")
	}
	dir, v, err := vf.source(ctx)
	if err != nil {
		return err
	}
	var cli, image []release.Platform
	if *platforms != "" {
		if cli, err = parsePlatforms(*platforms); err != nil {
			return err
		}
		for _, p := range cli {
			if p.OS == "linux" {
				image = append(image, p)
			}
		}
		if len(image) == 0 {
			return errors.New("--platforms: name at least one linux platform, for the image")
		}
	}
	if entries, err := os.ReadDir(*out); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty; remove it first", *out)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	res, err := release.Build(ctx, release.BuildOptions{ModuleDir: dir, Version: v, Out: *out, Helm: *helm, CLIPlatforms: cli, ImagePlatforms: image,
		BaseURL: strings.ReplaceAll(*baseURL, "{version}", release.SemVer(v))})
	if err != nil {
		return err
	}
	for _, f := range res.Files {
		fmt.Println(f)
	}
	return nil
}
