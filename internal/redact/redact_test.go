package redact

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestMessageForms(t *testing.T) {
	sec := Secret{Username: "robot$team", Password: `p@ss w/ "x"&<y>`}
	raw := sec.Username + ":" + sec.Password
	text := strings.Join([]string{
		"plain " + sec.Password,
		"basic " + base64.StdEncoding.EncodeToString([]byte(raw)),
		"url-b64 " + base64.RawURLEncoding.EncodeToString([]byte(raw)),
		"query password=" + url.QueryEscape(sec.Password),
		"path /" + url.PathEscape(sec.Password),
		`json {"p":` + mustJSON(sec.Password) + `}`,
	}, "\n")
	got := Message(text, sec)
	for _, f := range leakForms(sec) {
		if leaks(got, f) {
			t.Errorf("form %q survives in %q", f, got)
		}
	}
	if strings.Contains(got, "\n") {
		t.Errorf("line breaks survive: %q", got)
	}
}

func TestMessageStripsAndBounds(t *testing.T) {
	got := Message("a\x1b[31mred\x00\u202eevil\r\n" + strings.Repeat("é", 2000))
	if strings.ContainsAny(got, "\x1b\x00\u202e\r\n") {
		t.Errorf("control or format characters survive: %q", got)
	}
	if len(got) > MaxMessage || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Errorf("len %d, valid %t, %q…", len(got), utf8.ValidString(got), got[len(got)-10:])
	}
	if got := Message("short"); got != "short" {
		t.Errorf("short message changed: %q", got)
	}
	if got := Message(string([]byte{0xff, 'a'})); got != "\uFFFDa" {
		t.Errorf("invalid UTF-8: %q", got)
	}
}

func mustJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// leakForms are the forms of a secret that must never be in a message.
func leakForms(sec Secret) []string {
	raw := sec.Username + ":" + sec.Password
	out := []string{sec.Password, url.QueryEscape(sec.Password), url.PathEscape(sec.Password), strings.Trim(mustJSON(sec.Password), `"`)}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		out = append(out, enc.EncodeToString([]byte(raw)))
	}
	return out
}

// leaks: f appears in got outside the placeholders.
func leaks(got, f string) bool {
	for _, piece := range strings.Split(got, Placeholder) {
		if strings.Contains(piece, f) {
			return true
		}
	}
	return false
}

// echo answers every request with the request itself — URL, query and
// headers, Authorization included — as a registry error body, the way a
// hostile or careless server would.
func echo() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		msg := map[string]any{"url": r.URL.String(), "rawQuery": r.URL.RawQuery, "headers": r.Header, "body": string(body)}
		dump, _ := json.Marshal(msg)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": "UNAUTHORIZED", "message": string(dump)}}})
		// And the raw forms, outside JSON.
		_, _ = io.WriteString(w, r.Header.Get("Authorization")+" "+r.URL.RawQuery+" "+string(body))
	}))
}

// FuzzRedactEcho sends a secret to a server that echoes its request back
// (Basic auth, query and form as a token endpoint gets them) and redacts
// the answer: no form of the password survives, at any length.
func FuzzRedactEcho(f *testing.F) {
	srv := echo()
	defer srv.Close()
	f.Add("robot$team", "s3cr3t-p@ss")
	f.Add("u", `quote"and\backslash`)
	f.Add("AWS", "eyJwYXlsb2FkIjoiYWJjIn0=")
	f.Add("", "pässwörd<&>")
	f.Add("user:colon", "%41%42%43+/=")
	f.Fuzz(func(t *testing.T, user, pass string) {
		if len(pass) < minSecret || len(pass) > 512 || len(user) > 128 || strings.Contains(Placeholder, pass) ||
			!utf8.ValidString(pass) || !utf8.ValidString(user) || strings.ContainsAny(pass+user, "\x00\r\n") {
			t.Skip()
		}
		sec := Secret{Username: user, Password: pass}
		form := url.Values{"password": {pass}, "refresh_token": {pass}}
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/token?"+form.Encode(), strings.NewReader(form.Encode()))
		if err != nil {
			t.Skip()
		}
		req.SetBasicAuth(user, pass)
		req.Header.Set("X-Echo", url.PathEscape(pass))
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Skip() // a value net/http will not send
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		forms := Forms(sec)
		whole := replace(Printable(replace(string(body), forms)), forms)
		got := Message(string(body), sec)
		for _, lf := range leakForms(sec) {
			if strings.Contains(Placeholder, lf) {
				continue
			}
			if leaks(whole, lf) || leaks(got, lf) {
				t.Fatalf("form %q of the password survives:\n%s", lf, whole)
			}
		}
		if len(got) > MaxMessage {
			t.Fatalf("message of %d bytes", len(got))
		}
	})
}
