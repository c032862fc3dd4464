/* foehn launch's look at this machine: launchers on PATH and their flavour. */
#ifndef FOEHN_CLI_LAUNCH_PROBE_H
#define FOEHN_CLI_LAUNCH_PROBE_H

#include <stdbool.h>

#include "cli/launch.h"

/* An executable file `name` in a PATH directory. */
bool launch_on_path(const char *name);
/* What `mpiexec --version` says it is (MPIEXEC_NONE: absent or unknown). */
launch_mpiexec launch_mpiexec_flavour(void);
/* `mpirun --version` says Open MPI. */
bool launch_openmpi_mpirun(void);

#endif
