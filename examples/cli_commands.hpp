// Commands of the gyolo CLI that live in their own translation units.
#pragma once

/// gyolo train-step (examples/cli_train_step.cpp).
int train_step_command(int argc, char** argv);
