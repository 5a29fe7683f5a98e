package events

import (
	"strings"
	"testing"
)

// Identity lives in the subject: every agent subject names the callout
// and the agent id, and parses back to exactly those.
func TestAgentSubjectsNameTheAgent(t *testing.T) {
	s := Subjects{Prefix: "acme.wfp"}
	const c, id = "6f1c2b3a-9d4e-4f5a-8b6c-7d8e9f0a1b2c", "live-1"
	for got, want := range map[string]string{
		s.Agent(c, id):                   "acme.wfp.agent." + c + ".live-1",
		s.AgentPing(c, id):               "acme.wfp.agent." + c + ".live-1.ping",
		s.AgentInstancePing(c, id, "I1"): "acme.wfp.agent." + c + ".live-1.ping.I1",
		s.Result(c, id):                  "acme.wfp.result." + c + ".live-1",
		s.AgentInbox(c, id):              "acme.wfp.inbox." + c + ".live-1",
		AgentConsumer(c, id):             "agent_" + c + "_live-1",
	} {
		if got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
	if gc, gid, ok := s.ParseAgent(s.Agent(c, id)); !ok || gc != c || gid != id {
		t.Errorf("ParseAgent: %q %q %v", gc, gid, ok)
	}
	if gc, gid, ok := s.ParseResult(s.Result(c, id)); !ok || gc != c || gid != id {
		t.Errorf("ParseResult: %q %q %v", gc, gid, ok)
	}
	for _, bad := range []string{s.AgentPing(c, id), s.AgentProbe(), "acme.wfp.agent." + c, "wfp.agent." + c + ".x", s.Result(c, id)} {
		if _, _, ok := s.ParseAgent(bad); ok {
			t.Errorf("ParseAgent(%q) accepted", bad)
		}
	}
	if _, _, ok := s.ParseResult(s.Agent(c, id)); ok {
		t.Error("ParseResult accepted an announcement subject")
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"a", "live-1", "A_b-9", strings.Repeat("x", MaxNameLen), "6f1c2b3a-9d4e-4f5a-8b6c-7d8e9f0a1b2c"} {
		if err := ValidName("agent id", ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a.b", "a*", "a>", "a b", "a/b", `a\b`, "é", strings.Repeat("x", MaxNameLen+1)} {
		if err := ValidName("agent id", bad); err == nil || !strings.Contains(err.Error(), "agent id") {
			t.Errorf("%q: %v, want an error naming the agent id", bad, err)
		}
	}
}
