// Benchmark tool: the guest-internal floor of process creation. Spawns PROGRAM (no arguments)
// N times, one after another, waiting for each, with no host involvement; prints the p50/p99 of
// one spawn-and-wait and what each cost the guest kernel (context switches, interrupts), twice:
//   spawn_floor free runs=N p50_ms=.. p99_ms=.. ctxt_per_spawn=.. intr_per_spawn=..
//   spawn_floor agent-like runs=N ...
//   spawn_floor agent-like+pipes runs=N ...
// "free": posix_spawn from a process that may run on any CPU (what a program in the sandbox
// gets); "agent-like": the parent placed and the child started as the agent does it
// (placement.h, launch.h); "+pipes": stdout and stderr on pipes read to end of file as well.
// bench/exec prints it beside the exec round trip, so the report separates what process
// creation costs in this guest from what airlock adds around it.
#pragma once

namespace airlock::guest {

// raw: each mode's samples instead ("free 1.234 2.345 ...").
int run_spawn_floor(const char* runs_text, const char* program, bool raw);

}  // namespace airlock::guest
