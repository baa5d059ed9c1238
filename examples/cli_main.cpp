// The gyolo command-line program (examples/gyolo_cli.cpp has the commands; cli_main is apart from
// main so that the fuzz target tests/fuzz/fuzz_cli.cpp can link the CLI's parsers).
#include "cli_commands.hpp"

int main(int argc, char** argv) { return cli_main(argc, argv); }
