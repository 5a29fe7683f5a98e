package engine

// dropAgentMsg drops an agent message the engine will not act on (its
// body disagrees with its subject, it names no pending add of its
// callout, ...): counted in Stats.AgentDropped, and logged at most once a
// second per reason, with how many were dropped meanwhile, so an agent
// host that floods forgeries cannot flood the engine's log too.
func (e *Engine) dropAgentMsg(why, subject string, attrs ...any) {
	e.agentDropped.Add(1)
	e.warn.warn("engine: dropped an agent message: "+why, append([]any{"subject", subject}, attrs...)...)
}
