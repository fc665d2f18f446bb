package nodecreds

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"

	"regcred.dev/regcred/internal/credential"
)

// allPasswords are the passwords of every fixture credential.
func allPasswords() map[string]credential.Key {
	out := map[string]credential.Key{}
	for _, o := range fixtureCredentials() {
		c := must(credential.From(o))
		out[passwordOf(c.Key)] = c.Key
	}
	return out
}

// noLeak fails when w carries a token, or a password other than those of
// the credentials allowed to answer.
func noLeak(t *testing.T, e *env, w *httptest.ResponseRecorder, allowed ...credential.Key) {
	t.Helper()
	body := w.Body.Bytes()
	for pod, tok := range e.tokens {
		if bytes.Contains(body, []byte(tok)) {
			t.Errorf("the answer carries the token of %s", pod)
		}
		// The claims alone identify the token too.
		if parts := strings.Split(tok, "."); len(parts) == 3 && bytes.Contains(body, []byte(parts[1])) {
			t.Errorf("the answer carries the claims of the token of %s", pod)
		}
	}
	for pw, k := range allPasswords() {
		ok := false
		for _, a := range allowed {
			ok = ok || a == k
		}
		if !ok && bytes.Contains(body, []byte(pw)) {
			t.Errorf("the answer carries the password of %s", k)
		}
	}
}

// refusedAs checks an error answer: its status, one short text/plain
// line, nothing secret.
func refusedAs(t *testing.T, e *env, w *httptest.ResponseRecorder, status int, contains string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("HTTP %d %q, want %d", w.Code, w.Body, status)
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want text/plain", ct)
	}
	body := strings.TrimSuffix(w.Body.String(), "\n")
	if strings.Contains(body, "\n") || len(body) > 256 {
		t.Errorf("reason is not one line of at most 256 bytes: %q", body)
	}
	if !strings.Contains(body, contains) {
		t.Errorf("reason %q does not say %q", body, contains)
	}
	noLeak(t, e, w)
}

func TestServed(t *testing.T) {
	team, harbor, ghcr, own, tenant := clusterKey("harbor-team"), clusterKey("harbor"), clusterKey("both-ghcr"),
		credential.Key{Kind: credential.KindNamespaced, Namespace: "apps", Name: "own"},
		credential.Key{Kind: credential.KindNamespaced, Namespace: "other", Name: "tenant"}
	for _, tc := range []struct {
		name, pod, image string
		// want: answer key -> credential whose login it holds, in the
		// kubelet's order.
		want map[string]credential.Key
	}{
		{"host key", "apps/web", "harbor.example.com/app:1", map[string]credential.Key{"harbor.example.com/app": harbor}},
		{"longer key first, both in order", "apps/build", "harbor.example.com/team/app@sha256:" + strings.Repeat("a", 64),
			map[string]credential.Key{"harbor.example.com/team/app": team, "harbor.example.com/team": harbor}},
		{"delivery Both", "apps/web", "ghcr.io/acme/tool:v2", map[string]credential.Key{"ghcr.io/acme/tool": ghcr}},
		{"own RegistryCredential, default ServiceAccount", "apps/web", "own.example.com/x", map[string]credential.Key{"own.example.com/x": own}},
		{"tenant's RegistryCredential in its namespace, cluster one not selecting it", "other/x", "harbor.example.com/app",
			map[string]credential.Key{"harbor.example.com/app": tenant}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			w := e.ask(tc.image, e.tokens[tc.pod])
			resp := decodeResponse(t, w)
			if resp.APIVersion != credentialproviderv1.SchemeGroupVersion.String() || resp.Kind != "CredentialProviderResponse" {
				t.Errorf("answer is %s %s", resp.APIVersion, resp.Kind)
			}
			if resp.CacheKeyType != credentialproviderv1.ImagePluginCacheKeyType {
				t.Errorf("cacheKeyType %q, want Image: the kubelet must not reuse it for another image", resp.CacheKeyType)
			}
			if resp.CacheDuration == nil || resp.CacheDuration.Duration != time.Minute {
				t.Errorf("cacheDuration %v, want the configured 1m", resp.CacheDuration)
			}
			if len(resp.Auth) != len(tc.want) {
				t.Errorf("auth has %d keys %v, want %d", len(resp.Auth), keysOf(resp.Auth), len(tc.want))
			}
			var allowed []credential.Key
			for key, k := range tc.want {
				allowed = append(allowed, k)
				a, ok := resp.Auth[key]
				if !ok {
					t.Errorf("no auth under %q (have %v)", key, keysOf(resp.Auth))
					continue
				}
				if a.Username != "user-"+k.Name || a.Password != passwordOf(k) {
					t.Errorf("auth[%q] is %s's, want %s's", key, a.Username, k)
				}
			}
			noLeak(t, e, w, allowed...)
		})
	}
}

func keysOf(m map[string]credentialproviderv1.AuthConfig) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestCacheDuration(t *testing.T) {
	for _, tc := range []struct {
		name          string
		configured    time.Duration
		tokenLeft     time.Duration
		sourceLeft    time.Duration
		want, wantMax time.Duration
	}{
		{"configured", time.Minute, time.Hour, 0, time.Minute, time.Minute},
		{"shorter configured", 10 * time.Second, time.Hour, 0, 10 * time.Second, 10 * time.Second},
		// A margin of 30s before the token's expiry; the clock ticks
		// between minting and answering, so allow a second less.
		{"token expires first", time.Minute, 75 * time.Second, 0, 44 * time.Second, 45 * time.Second},
		{"cloud token expires first", time.Minute, time.Hour, 50 * time.Second, 19 * time.Second, 20 * time.Second},
		{"token almost expired", time.Minute, 20 * time.Second, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{CacheDuration: tc.configured}, func(e *env) {
				tok := jwt(e.now.Add(tc.tokenLeft))
				e.review.accept(tok, boundStatus("apps", "default", "web", "uid-apps-web", testNode))
				e.tokens["apps/web"] = tok
				if tc.sourceLeft > 0 {
					e.src.expires[clusterKey("harbor")] = e.now.Add(tc.sourceLeft)
				}
			})
			resp := decodeResponse(t, e.ask("harbor.example.com/app", e.tokens["apps/web"]))
			if len(resp.Auth) != 1 {
				t.Fatalf("auth %v", keysOf(resp.Auth))
			}
			if d := resp.CacheDuration.Duration; d < tc.want || d > tc.wantMax {
				t.Errorf("cacheDuration %s, want %s..%s", d, tc.want, tc.wantMax)
			}
		})
	}
}

func TestEmptyAnswers(t *testing.T) {
	for _, tc := range []struct {
		name, pod, image string
		// never: credentials the Source must not even be asked for.
		never   []credential.Key
		refused credential.Key
	}{
		{"no credential covers the image", "apps/web", "docker.io/library/nginx:1", nil, credential.Key{}},
		{"delivery Secrets is never served", "apps/web", "secret.example.com/app", []credential.Key{clusterKey("secrets-only")}, credential.Key{}},
		{"another namespace's RegistryCredential is never served", "apps/web", "tenant.example.com/app",
			[]credential.Key{{Kind: credential.KindNamespaced, Namespace: "other", Name: "tenant"}}, credential.Key{}},
		{"ServiceAccount not selected", "apps/build", "own.example.com/app",
			[]credential.Key{{Kind: credential.KindNamespaced, Namespace: "apps", Name: "own"}},
			credential.Key{Kind: credential.KindNamespaced, Namespace: "apps", Name: "own"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			w := e.ask(tc.image, e.tokens[tc.pod])
			resp := decodeResponse(t, w)
			if len(resp.Auth) != 0 {
				t.Errorf("auth %v, want none", keysOf(resp.Auth))
			}
			if resp.CacheDuration == nil || resp.CacheDuration.Duration != 0 {
				t.Errorf("cacheDuration %v, want 0: a credential made a moment later must serve the next pull", resp.CacheDuration)
			}
			for _, k := range tc.never {
				if n := e.src.count(k); n != 0 {
					t.Errorf("%s rendered %d times", k, n)
				}
			}
			noLeak(t, e, w)
			if tc.refused != (credential.Key{}) {
				d := e.broker.Stats().take()[tc.refused]
				if d == nil || d.refused != 1 || d.served != 0 {
					t.Errorf("stats of %s: %+v, want 1 refused", tc.refused, d)
				}
			}
		})
	}
}

// TestNotSelectedCountsRefused: a credential covering the image and
// acting in the namespace but not selecting the ServiceAccount is counted
// as refused, with the reason; one that does not act in the namespace is
// not (a tenant must not write into a cluster credential's status); the
// one that does select serves.
func TestNotSelectedCountsRefused(t *testing.T) {
	e := newEnv(t, Options{})
	// other/x: harbor selects team=a only; the tenant's own serves.
	resp := decodeResponse(t, e.ask("harbor.example.com/app", e.tokens["other/x"]))
	if len(resp.Auth) != 1 {
		t.Fatalf("auth %v", keysOf(resp.Auth))
	}
	// apps/web: harbor-team selects role=build only; harbor serves.
	resp = decodeResponse(t, e.ask("harbor.example.com/team/app", e.tokens["apps/web"]))
	if a := resp.Auth["harbor.example.com/team/app"]; len(resp.Auth) != 1 || a.Password != passwordOf(clusterKey("harbor")) {
		t.Fatalf("auth %v, want harbor's alone", keysOf(resp.Auth))
	}
	st := e.broker.Stats().take()
	if d := st[clusterKey("harbor")]; d != nil && d.refused != 0 {
		t.Errorf("harbor counted %d refusals for a namespace it does not select: %q", d.refused, d.lastRefusal)
	}
	for k, want := range map[credential.Key]string{clusterKey("harbor-team"): "ServiceAccount apps/default is not selected"} {
		d := st[k]
		if d == nil || d.refused != 1 || !strings.Contains(d.lastRefusal, want) || d.nodes[testNode].IsZero() {
			t.Errorf("stats of %s: %+v, want 1 refused saying %q on %s", k, d, want, testNode)
		}
	}
	if d := st[clusterKey("harbor")]; d.served != 1 {
		t.Errorf("harbor served %d, want 1 (apps/web)", d.served)
	}
	if d := st[credential.Key{Kind: credential.KindNamespaced, Namespace: "other", Name: "tenant"}]; d == nil || d.served != 1 {
		t.Errorf("tenant stats %+v, want 1 served", d)
	}
}

func TestUnauthenticated(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status *authenticationv1.TokenReviewStatus // nil: the API server does not know it
		token  string                              // default: a fresh JWT
		code   int
		says   string
	}{
		{"no token", nil, "-", 401, "carries no ServiceAccount token"},
		{"token the API server rejects", nil, "", 401, "did not accept"},
		{"token of another audience", &authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"https://kubernetes.default.svc"},
			User: boundStatus("apps", "default", "web", "uid-apps-web", testNode).User}, "", 401, "not for audience"},
		{"not a ServiceAccount", &authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{DefaultAudience},
			User: authenticationv1.UserInfo{Username: "alice"}}, "", 403, "not a ServiceAccount's"},
		{"no Pod binding", &authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{DefaultAudience},
			User: authenticationv1.UserInfo{Username: saPrefix + "apps:default"}}, "", 403, "not bound to a Pod"},
		{"no node", ptr(boundStatus("apps", "default", "web", "uid-apps-web", "")), "", 403, "not bound to a node"},
		{"not a JWT (no review spent)", ptr(boundStatus("apps", "default", "web", "uid-apps-web", testNode)), "opaque-token", 401, "not a JWT"},
		{"token too long", nil, strings.Repeat("x", maxToken+1), 401, "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			tok := tc.token
			switch tok {
			case "":
				tok = jwt(e.now.Add(time.Hour))
			case "-":
				tok = ""
			}
			if tc.status != nil {
				e.review.accept(tok, *tc.status)
			}
			e.tokens["test"] = tok
			w := e.ask("harbor.example.com/app", tok)
			if tok == "" {
				delete(e.tokens, "test")
			}
			refusedAs(t, e, w, tc.code, tc.says)
			want := int64(1)
			if tok == "opaque-token" {
				want = 0
			}
			if tok != "" && len(tok) <= maxToken && e.review.calls.Load() != want {
				t.Errorf("%d TokenReviews, want %d", e.review.calls.Load(), want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestPodChecks(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		ns, sa, pod, uid, node string
		says                   string
	}{
		{"Pod gone", "apps", "default", "ghost", "uid-apps-ghost", testNode, "Pod apps/ghost does not exist"},
		{"Pod replaced (UID)", "apps", "default", "web", "uid-old", testNode, "not the one the token is bound to"},
		{"another node", "apps", "default", "web", "uid-apps-web", "node-b", "does not run on node node-b"},
		{"another ServiceAccount", "apps", "builder", "web", "uid-apps-web", testNode, "runs as ServiceAccount default, not builder"},
		{"Pod mounts a token for the audience", "apps", "default", "sneaky", "uid-apps-sneaky", testNode, "mounts a ServiceAccount token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			tok := jwt(e.now.Add(time.Hour))
			e.review.accept(tok, boundStatus(tc.ns, tc.sa, tc.pod, tc.uid, tc.node))
			e.tokens["test"] = tok
			refusedAs(t, e, e.ask("harbor.example.com/app", tok), http.StatusForbidden, tc.says)
			if n := e.src.count(clusterKey("harbor")); n != 0 {
				t.Errorf("harbor rendered %d times for a refused Pod", n)
			}
		})
	}
}

func TestPodDeletedAfterCaching(t *testing.T) {
	// A token cached a moment ago does not outlive its Pod: the Pod is
	// read live at every request.
	e := newEnv(t, Options{})
	tok := e.tokens["apps/web"]
	decodeResponse(t, e.ask("harbor.example.com/app", tok))
	if err := e.client.Delete(context.Background(), testPod("apps", "web", "", testNode)); err != nil {
		t.Fatal(err)
	}
	refusedAs(t, e, e.ask("harbor.example.com/app", tok), http.StatusForbidden, "does not exist")
	if n := e.review.calls.Load(); n != 1 {
		t.Errorf("%d TokenReviews, want 1 (cached)", n)
	}
}

func TestRateLimitPerNode(t *testing.T) {
	e := newEnv(t, Options{NodeQPS: 1e-6, NodeBurst: 2}, func(e *env) {
		p := testPod("apps", "far", "", "node-b")
		if err := e.client.Create(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		tok := jwt(e.now.Add(time.Hour))
		e.review.accept(tok, boundStatus("apps", "default", "far", string(p.UID), "node-b"))
		e.tokens["apps/far"] = tok
	})
	for i := range 2 {
		if w := e.ask("harbor.example.com/app", e.tokens["apps/web"]); w.Code != 200 {
			t.Fatalf("request %d: HTTP %d %s", i, w.Code, w.Body)
		}
	}
	refusedAs(t, e, e.ask("harbor.example.com/app", e.tokens["apps/build"]), http.StatusTooManyRequests, "node node-a is over its request rate")
	if w := e.ask("harbor.example.com/app", e.tokens["apps/far"]); w.Code != 200 {
		t.Errorf("another node is limited too: HTTP %d %s", w.Code, w.Body)
	}
}

func TestReviewRateLimit(t *testing.T) {
	e := newEnv(t, Options{ReviewQPS: 1e-6, ReviewBurst: 1})
	if w := e.ask("harbor.example.com/app", e.tokens["apps/web"]); w.Code != 200 {
		t.Fatalf("HTTP %d %s", w.Code, w.Body)
	}
	refusedAs(t, e, e.ask("harbor.example.com/app", e.tokens["apps/build"]), http.StatusTooManyRequests, "too many tokens")
	refusedAs(t, e, e.ask("harbor.example.com/app", jwt(e.now.Add(time.Hour))), http.StatusTooManyRequests, "too many tokens")
	// A cached token is not limited.
	if w := e.ask("harbor.example.com/app", e.tokens["apps/web"]); w.Code != 200 {
		t.Errorf("cached token limited: HTTP %d %s", w.Code, w.Body)
	}
	if n := e.review.calls.Load(); n != 1 {
		t.Errorf("%d TokenReviews, want 1", n)
	}
}

func TestInvalidRequests(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.tokens["apps/web"]
	big := requestBody("harbor.example.com/app", tok)
	big = append(big[:len(big)-1], []byte(`,"serviceAccountAnnotations":{"a":"`+strings.Repeat("x", MaxBody)+`"}}`)...)
	for _, tc := range []struct {
		name   string
		method string
		body   []byte
		code   int
		says   string
	}{
		{"GET", http.MethodGet, nil, http.StatusMethodNotAllowed, "POST"},
		{"body too large", http.MethodPost, big, http.StatusRequestEntityTooLarge, "larger than"},
		{"not JSON", http.MethodPost, []byte("image=harbor.example.com/app"), http.StatusBadRequest, "not a CredentialProviderRequest"},
		{"wrong apiVersion", http.MethodPost, bytes.Replace(requestBody("harbor.example.com/app", tok),
			[]byte("credentialprovider.kubelet.k8s.io/v1"), []byte("credentialprovider.kubelet.k8s.io/v1beta1"), 1), http.StatusBadRequest, "want credentialprovider.kubelet.k8s.io/v1"},
		{"wrong kind", http.MethodPost, bytes.Replace(requestBody("harbor.example.com/app", tok),
			[]byte(`"CredentialProviderRequest"`), []byte(`"CredentialProviderResponse"`), 1), http.StatusBadRequest, "want"},
		{"no image", http.MethodPost, requestBody("", tok), http.StatusBadRequest, "names no image"},
		{"image does not parse", http.MethodPost, requestBody("Harbor.example.com/UPPER::x", tok), http.StatusBadRequest, "does not parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, Path, bytes.NewReader(tc.body))
			w := httptest.NewRecorder()
			e.broker.ServeHTTP(w, r)
			refusedAs(t, e, w, tc.code, tc.says)
		})
	}
}

func TestNotSynced(t *testing.T) {
	e := newEnv(t, Options{}, func(e *env) {
		e.cat = credential.NewCatalogue(regcredNS)
		for _, c := range fixtureCredentials() {
			e.cat.Put(c)
		}
	})
	refusedAs(t, e, e.ask("harbor.example.com/app", e.tokens["apps/web"]), http.StatusServiceUnavailable, "not loaded yet")
	w := httptest.NewRecorder()
	e.broker.ServeHTTP(w, httptest.NewRequest(http.MethodGet, HealthPath, nil))
	refusedAs(t, e, w, http.StatusServiceUnavailable, "not loaded yet")
	if n := e.review.calls.Load(); n != 0 {
		t.Errorf("%d TokenReviews before the catalogue is loaded, want 0", n)
	}
	e.cat.MarkSynced()
	w = httptest.NewRecorder()
	e.broker.ServeHTTP(w, httptest.NewRequest(http.MethodGet, HealthPath, nil))
	if w.Code != 200 || strings.TrimSpace(w.Body.String()) != "ok" {
		t.Errorf("healthz: HTTP %d %q", w.Code, w.Body)
	}
}

func TestHealthz(t *testing.T) {
	e := newEnv(t, Options{})
	w := httptest.NewRecorder()
	e.broker.ServeHTTP(w, httptest.NewRequest(http.MethodGet, HealthPath, nil))
	if w.Code != 200 || strings.TrimSpace(w.Body.String()) != "ok" {
		t.Errorf("healthz: HTTP %d %q", w.Code, w.Body)
	}
}

func TestErrorsCarryNoSecret(t *testing.T) {
	t.Run("TokenReview fails", func(t *testing.T) {
		e := newEnv(t, Options{})
		e.review.err = errAPIDown
		w := e.ask("harbor.example.com/app", e.tokens["apps/web"])
		if w.Code != http.StatusInternalServerError {
			t.Fatalf("HTTP %d %s", w.Code, w.Body)
		}
		noLeak(t, e, w)
		// Not cached: the next request reviews again once the API is back.
		e.review.err = nil
		decodeResponse(t, e.ask("harbor.example.com/app", e.tokens["apps/web"]))
	})
	t.Run("a source fails, the others answer", func(t *testing.T) {
		e := newEnv(t, Options{})
		e.src.fail[clusterKey("harbor-team")] = context.DeadlineExceeded
		w := e.ask("harbor.example.com/team/app", e.tokens["apps/build"])
		resp := decodeResponse(t, w)
		if len(resp.Auth) != 1 || resp.Auth["harbor.example.com/team/app"].Password != passwordOf(clusterKey("harbor")) {
			t.Errorf("auth %v, want harbor's alone", keysOf(resp.Auth))
		}
		noLeak(t, e, w, clusterKey("harbor"))
	})
	t.Run("Options.Validate names no secret", func(t *testing.T) {
		for _, o := range []Options{{Audience: "https://kubernetes.default.svc"}, {CacheDuration: 2 * time.Hour}, {NodeQPS: -1}} {
			if _, err := New(Deps{}, o); err == nil {
				t.Errorf("%+v accepted", o)
			}
		}
	})
}

// TestAuthForOrder: the answer's keys, visited by the kubelet in reverse
// byte order, give the logins in the order the kubelet would try them as
// pull Secrets; repeats collapse; logins past the keys are dropped.
func TestAuthForOrder(t *testing.T) {
	mk := func(origin, key, user string) servedCredential {
		return servedCredential{origin: origin, Rendered: Rendered{Config: configOf(key, user)}}
	}
	repo := "harbor.example.com/team/app"
	creds := []servedCredential{
		mk("a", "harbor.example.com", "host"),
		mk("b", "harbor.example.com/team", "team"),
		mk("c", "harbor.example.com/team/app", "app"),
		mk("d", "harbor.example.com", "host"), // a repeat of a
		mk("e", "*.example.com", "glob"),
		mk("f", "other.example.com", "other"),
	}
	auth, dropped := authFor(repo, parseTarget(repo), creds)
	want := []string{"app", "team", "host"}
	slots := keySlots(repo)
	if len(auth) != len(want) {
		t.Fatalf("auth %v", auth)
	}
	for i, u := range want {
		if auth[slots[i]].Username != u {
			t.Errorf("auth[%q] = %q, want %q", slots[i], auth[slots[i]].Username, u)
		}
	}
	if dropped != 1 {
		t.Errorf("dropped %d, want 1 (the glob, past the 3 keys)", dropped)
	}
	// The kubelet's order over the keys: reverse byte order.
	for i := 1; i < len(slots); i++ {
		if slots[i-1] <= slots[i] {
			t.Errorf("slots %v not in reverse byte order", slots)
		}
	}
	if a, d := authFor(repo, parseTarget(repo), nil); len(a) != 0 || d != 0 {
		t.Errorf("no credential: %v %d", a, d)
	}
}

func TestKeySlots(t *testing.T) {
	for repo, want := range map[string][]string{
		"harbor.example.com/a/b": {"harbor.example.com/a/b", "harbor.example.com/a", "harbor.example.com"},
		"docker.io/library/x":    {"docker.io/library/x", "docker.io/library", "docker.io"},
		"localhost:5000/x":       {"localhost:5000/x", "localhost:5000"},
	} {
		if got := keySlots(repo); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("keySlots(%q) = %v, want %v", repo, got, want)
		}
	}
}
