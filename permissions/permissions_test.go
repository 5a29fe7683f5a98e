package permissions

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/wfpnats/wfp/events"
)

const calloutKey = "6f1c2b3a-9d4e-4f5a-8b6c-7d8e9f0a1b2c"

func sets(t *testing.T) map[string]Set {
	t.Helper()
	d := Deployment{Stream: "S", Prefix: "acme.wfp"}
	out := map[string]Set{}
	var err error
	if out["agent"], err = Agent(d, strings.ToUpper(calloutKey), "a-1", ""); err != nil {
		t.Fatal(err)
	}
	if out["durable"], err = Agent(d, calloutKey, "a-2", "dur"); err != nil {
		t.Fatal(err)
	}
	if out["operator"], err = Operator(d); err != nil {
		t.Fatal(err)
	}
	if out["manager"], err = Manager(d); err != nil {
		t.Fatal(err)
	}
	if out["engine"], err = Engine(d); err != nil {
		t.Fatal(err)
	}
	return out
}

// What Conf prints is what nats-server's own parser reads back: the same
// subjects, allowed, and the response permission.
func TestConfIsReadByTheServerAsTheSet(t *testing.T) {
	for role, set := range sets(t) {
		conf := filepath.Join(t.TempDir(), "server.conf")
		body := fmt.Sprintf("authorization { users: [ { user: u, password: p\n%s } ] }\n", set.Conf())
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		o, err := server.ProcessConfigFile(conf)
		if err != nil {
			t.Fatalf("%s: %v\n%s", role, err, body)
		}
		p := o.Users[0].Permissions
		if !slices.Equal(p.Publish.Allow, set.Publish) || !slices.Equal(p.Subscribe.Allow, set.Subscribe) {
			t.Errorf("%s: parsed publish %v subscribe %v, want %v %v", role, p.Publish.Allow, p.Subscribe.Allow, set.Publish, set.Subscribe)
		}
		if (p.Response != nil) != set.Responses || (p.Response != nil && (p.Response.MaxMsgs != 1 || p.Response.Expires != ResponseTTL)) {
			t.Errorf("%s: responses %+v, want %v", role, p.Response, set.Responses)
		}
		if p.Publish.Deny != nil || p.Subscribe.Deny != nil {
			t.Errorf("%s: deny lists %v %v", role, p.Publish.Deny, p.Subscribe.Deny)
		}
	}
}

// JSON has the shape of a user JWT's permissions, with the same lists.
func TestJSONIsTheSetInJWTShape(t *testing.T) {
	for role, set := range sets(t) {
		b, err := set.JSON()
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Pub, Sub struct{ Allow []string }
			Resp     *struct {
				Max int   `json:"max"`
				TTL int64 `json:"ttl"`
			}
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		if !slices.Equal(got.Pub.Allow, set.Publish) || !slices.Equal(got.Sub.Allow, set.Subscribe) ||
			(got.Resp != nil) != set.Responses || (got.Resp != nil && (got.Resp.Max != 1 || got.Resp.TTL != int64(ResponseTTL))) {
			t.Errorf("%s: %s", role, b)
		}
		if strings.Contains(string(b), `\u003e`) {
			t.Errorf("%s: escaped '>': %s", role, b)
		}
	}
}

// An agent's set names only its own callout, agent id and consumers: no
// wildcard over callouts, agent ids or consumer names, nothing of the
// stream's own subjects, no API, no shared inbox. A durable agent has its
// durable and, for the snapshot of a resync, the consumer of its agent id.
func TestAgentSetIsConfinedToItsCalloutAndID(t *testing.T) {
	all := sets(t)
	s := events.Subjects{Prefix: "acme.wfp"}
	for _, role := range []string{"agent", "durable"} {
		set := all[role]
		id, name := "a-1", events.AgentConsumer(calloutKey, "a-1")
		names := []string{name}
		if role == "durable" {
			id, name = "a-2", "dur"
			names = []string{name, events.AgentConsumer(calloutKey, "a-2")}
		}
		ownConsumer := func(subj string) bool {
			for _, n := range names {
				if strings.HasSuffix(subj, ".S."+n) || strings.Contains(subj, ".S."+n+".") {
					return true
				}
			}
			return false
		}
		for _, subj := range append(slices.Clone(set.Publish), set.Subscribe...) {
			switch {
			case strings.HasPrefix(subj, "$JS."):
				if !ownConsumer(subj) && subj != "$JS.API.DIRECT.GET.S."+s.CalloutFilters(calloutKey) {
					t.Errorf("%s: JetStream subject %q is not about its own consumer or callout", role, subj)
				}
			case subj == s.AgentProbe(), subj == s.LiveFilters(calloutKey): // its own callout's live events
			default:
				if !strings.Contains(subj, "."+calloutKey+"."+id) {
					t.Errorf("%s: subject %q does not name its callout and agent id", role, subj)
				}
			}
			if strings.Contains(subj, "_INBOX") || strings.Contains(subj, ".api.") || strings.HasPrefix(subj, s.Prefix+".filter.") {
				t.Errorf("%s: %q", role, subj)
			}
		}
		if slices.Contains(set.Publish, "$JS.ACK.S."+name+".>") != (role == "durable") {
			t.Errorf("%s: ack subject present %v", role, !(role == "durable"))
		}
	}
}

func TestBadArgumentsAreRefused(t *testing.T) {
	for _, c := range []struct {
		d                Deployment
		key, id, durable string
	}{
		{Deployment{}, "nope", "a", ""},
		{Deployment{}, calloutKey, "a.b", ""},
		{Deployment{}, calloutKey, "a", "d*"},
		{Deployment{Stream: "a.b"}, calloutKey, "a", ""},
		{Deployment{Prefix: "wfp.>"}, calloutKey, "a", ""},
	} {
		if _, err := Agent(c.d, c.key, c.id, c.durable); err == nil {
			t.Errorf("%+v: want error", c)
		}
	}
}
