package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// ErrBlocked is the error of a connection the Guard refused. It names the
// class only: the address is the tenant's to know already, and what lives
// there is not.
var ErrBlocked = errors.New("the registry address is in a private range the manager may not reach for tenants")

// blockedRanges are the addresses a tenant's target may not resolve to:
// loopback, link-local (the cloud metadata services at 169.254.169.254),
// private (RFC 1918, fc00::/7), unspecified, multicast, CGNAT, and the
// IPv4-mapped forms of all of them.
var blockedRanges = mustPrefixes(
	"0.0.0.0/8", "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
	"169.254.0.0/16", "100.64.0.0/10", "224.0.0.0/4", "240.0.0.0/4", "192.0.0.0/24",
	"::/128", "::1/128", "fe80::/10", "fc00::/7", "ff00::/8", "64:ff9b::/96", "2001:db8::/32",
	// Benchmarking, site-local, local NAT64, 6to4 (which wraps any IPv4
	// address) and IPv4-compatible addresses.
	"198.18.0.0/15", "fec0::/10", "64:ff9b:1::/48", "2002::/16", "::/96",
)

// Guard refuses connections to blocked ranges unless an allowed prefix
// holds the address. It decides on the address being dialled, after DNS,
// so a name that resolves to a public address at check time and to a
// private one at connect time (DNS rebinding) is still refused. The zero
// value allows nothing blocked.
type Guard struct {
	allow []netip.Prefix
}

// NewGuard is a Guard lifted for allow: CIDRs ("10.1.0.0/16") or single
// addresses ("10.1.2.3").
func NewGuard(allow []string) (*Guard, error) {
	g := &Guard{}
	for _, a := range allow {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		p, err := parsePrefix(a)
		if err != nil {
			return nil, fmt.Errorf("allowed network %q: want a CIDR such as 10.0.0.0/8 or an IP address", a)
		}
		g.allow = append(g.allow, p)
	}
	return g, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Allowed reports whether the guard lets a connection to ip through.
func (g *Guard) Allowed(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	for _, p := range g.allow {
		if p.Contains(ip) {
			return true
		}
	}
	for _, p := range blockedRanges {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// Control is a net.Dialer Control function: it runs on the resolved
// address of every connection attempt.
func (g *Guard) Control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return ErrBlocked
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !g.Allowed(ip) {
		return ErrBlocked
	}
	return nil
}

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}
