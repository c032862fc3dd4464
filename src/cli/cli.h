/* The foehn command: one function per subcommand. */
#ifndef FOEHN_CLI_CLI_H
#define FOEHN_CLI_CLI_H

/* argv[0] is the subcommand's name; returns the process exit status. */
int foehn_cmd_env(int argc, char **argv);
int foehn_cmd_run(int argc, char **argv);
int foehn_cmd_launch(int argc, char **argv);
int foehn_cmd_bind_gpus(int argc, char **argv);
int foehn_cmd_venv(int argc, char **argv);
int foehn_cmd_doctor(int argc, char **argv);

#endif
