// Members of class templates that gyolo's library compiles once for the common instantiations (the
// CPU backend; src/graph_cpu.cpp, src/caption_cpu.cpp), declared `extern template` beside the
// class. Programs that include gyolo call them instead of compiling them again.
//
// Put GYOLO_COMPILED_ONCE before such a member defined inside its class: a member defined in the
// class is inline, and compilers instantiate an extern template's inline members anyway, to be able
// to inline them (gcc and clang at -O1 and above), which costs every including file the time to
// optimise code it will not keep. A function that is never inlined is not instantiated there.
// The members marked are large (a network's forward pass, a decoder), so a call costs nothing.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define GYOLO_COMPILED_ONCE [[gnu::noinline]]
#else
#define GYOLO_COMPILED_ONCE
#endif
