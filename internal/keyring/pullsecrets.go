package keyring

import (
	"fmt"

	"regcred.dev/regcred/internal/dockercfg"
)

// PullSecret is the part of a Secret the kubelet reads when a Pod names it
// in imagePullSecrets.
type PullSecret struct {
	Namespace string
	Name      string
	Type      string
	Data      map[string][]byte
}

// Ref is namespace/name.
func (s PullSecret) Ref() string { return s.Namespace + "/" + s.Name }

// IgnoredSecret is a pull Secret the kubelet skips without an error.
type IgnoredSecret struct {
	Secret string
	Reason string
}

// MalformedSecretError is a pull Secret the kubelet cannot parse. The
// kubelet then fails the pull of every image of the Pod, whatever registry
// it is on.
type MalformedSecretError struct {
	Secret string
	Err    error
}

func (e *MalformedSecretError) Error() string {
	return fmt.Sprintf("pull secret %s is malformed: %v", e.Secret, e.Err)
}

func (e *MalformedSecretError) Unwrap() error { return e.Err }

// FromPullSecrets builds the keyring the kubelet builds from a Pod's pull
// Secrets, in imagePullSecrets order: Secrets of type
// kubernetes.io/dockerconfigjson with a non-empty .dockerconfigjson key and of
// type kubernetes.io/dockercfg with a non-empty .dockercfg key are read, all
// into one keyring; every other Secret is skipped and reported. The first
// Secret that fails to parse is returned as a *MalformedSecretError.
func FromPullSecrets(secrets []PullSecret) (*Keyring, []IgnoredSecret, error) {
	k := &Keyring{}
	var ignored []IgnoredSecret
	for _, s := range secrets {
		var (
			cfg *dockercfg.Config
			err error
		)
		switch {
		case s.Type == dockercfg.SecretTypeDockerConfigJSON && len(s.Data[dockercfg.DockerConfigJSONKey]) > 0:
			cfg, err = dockercfg.ParseDockerConfigJSON(s.Data[dockercfg.DockerConfigJSONKey])
			if err != nil {
				err = fmt.Errorf("%s: %w", dockercfg.DockerConfigJSONKey, err)
			}
		case s.Type == dockercfg.SecretTypeDockercfg && len(s.Data[dockercfg.DockercfgKey]) > 0:
			cfg, err = dockercfg.ParseDockercfg(s.Data[dockercfg.DockercfgKey])
			if err != nil {
				err = fmt.Errorf("%s: %w", dockercfg.DockercfgKey, err)
			}
		case s.Type == dockercfg.SecretTypeDockerConfigJSON:
			ignored = append(ignored, IgnoredSecret{s.Ref(), "has no " + dockercfg.DockerConfigJSONKey + " data"})
			continue
		case s.Type == dockercfg.SecretTypeDockercfg:
			ignored = append(ignored, IgnoredSecret{s.Ref(), "has no " + dockercfg.DockercfgKey + " data"})
			continue
		default:
			ignored = append(ignored, IgnoredSecret{s.Ref(), fmt.Sprintf("is of type %q; the kubelet only reads %s and %s pull secrets",
				s.Type, dockercfg.SecretTypeDockerConfigJSON, dockercfg.SecretTypeDockercfg)})
			continue
		}
		if err != nil {
			return nil, ignored, &MalformedSecretError{Secret: s.Ref(), Err: err}
		}
		k.Add(s.Ref(), cfg)
	}
	return k, ignored, nil
}
