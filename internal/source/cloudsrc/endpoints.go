package cloudsrc

import (
	"fmt"
	"net/url"
	"strings"

	"regcred.dev/regcred/api/v1alpha1"
)

// tenantEndpoints refuses a tenant's endpoint overrides whose host the
// manager does not allow: each one receives what regcred sends in the
// tenant's name (a ServiceAccount token, a signed request, a client
// secret) from the manager's network position.
func (b *Builder) tenantEndpoints(src *v1alpha1.CredentialSource) error {
	for field, u := range endpointOverrides(src) {
		if u == "" || b.tenantHostAllowed(u) {
			continue
		}
		host := u
		if p, err := url.Parse(u); err == nil && p.Host != "" {
			host = p.Host
		}
		if len(b.TenantEndpointHosts) == 0 {
			return fmt.Errorf("a RegistryCredential cannot override %s (host %s): the manager allows no tenant endpoint hosts (--tenant-endpoint-hosts)", field, host)
		}
		return fmt.Errorf("a RegistryCredential cannot override %s with host %s: it is not in the manager's --tenant-endpoint-hosts (%s)",
			field, host, strings.Join(b.TenantEndpointHosts, ","))
	}
	if a := src.ACR; a != nil && !acrLoginServer(a.Registry) && !HostAllowed("https://"+a.Registry, b.TenantEndpointHosts) {
		// The Entra token, good for every registry the identity reads, is
		// posted to https://<registry>/oauth2/exchange.
		return fmt.Errorf("a RegistryCredential's spec.source.acr.registry %s is not an Azure login server (*%s) nor in the manager's --tenant-endpoint-hosts",
			a.Registry, strings.Join(acrSuffixes, ", *"))
	}
	return nil
}

// acrSuffixes are the domains of Azure Container Registry login servers
// (public, China, US Government clouds).
var acrSuffixes = []string{".azurecr.io", ".azurecr.cn", ".azurecr.us"}

func acrLoginServer(registry string) bool {
	host := strings.ToLower(registry)
	for _, sfx := range acrSuffixes {
		if name, ok := strings.CutSuffix(host, sfx); ok && name != "" && !strings.ContainsAny(name, ".:") {
			return true
		}
	}
	return false
}

// endpointOverrides are the source's endpoint overrides by field.
func endpointOverrides(src *v1alpha1.CredentialSource) map[string]string {
	out := map[string]string{}
	if src.ECR != nil {
		out["spec.source.ecr.endpoint"] = src.ECR.Endpoint
	}
	if src.GCP != nil {
		out["spec.source.gcp.tokenURL"] = src.GCP.TokenURL
	}
	if src.ACR != nil {
		out["spec.source.acr.authorityHost"] = src.ACR.AuthorityHost
	}
	return out
}

// tenantHostAllowed reports whether rawURL is https and its host (with or
// without the port) is in TenantEndpointHosts.
func (b *Builder) tenantHostAllowed(rawURL string) bool {
	return HostAllowed(rawURL, b.TenantEndpointHosts)
}

// HostAllowed reports whether rawURL is an https URL whose host, as
// host:port or as the bare host name, is one of hosts (case-insensitive).
func HostAllowed(rawURL string, hosts []string) bool {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return false
	}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h != "" && (strings.EqualFold(h, u.Host) || strings.EqualFold(h, u.Hostname())) {
			return true
		}
	}
	return false
}
