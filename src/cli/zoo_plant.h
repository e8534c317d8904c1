/*
 * zoo_plant.h: `mechbench zoo plant NAME`: the zoo's hand-set models (no
 * training; ioi_planted.h), and their check in `zoo verify`.
 */
#ifndef MB_CLI_ZOO_PLANT_H
#define MB_CLI_ZOO_PLANT_H

#include <mechbench/error.h>
#include <mechbench/zoo.h>

#include "options.h"

/* The MANIFEST preset of a hand-set model. */
#define MB_ZOO_PLANTED_PRESET "planted"

extern const mb_cli_cmd mb_zoo_plant_cmd;

/* `zoo plant NAME --out DIR` (argv[0] is "plant"). */
int mb_zoo_plant(int argc, char **argv);

/* zoo verify for a model whose MANIFEST preset is "planted": rebuilds m's
 * model into a temporary folder and compares every file the MANIFEST lists
 * with dir's (the MANIFEST's sha256s are checked before). Prints one line
 * per outcome prefixed with label; returns 0 when identical, 1 when not,
 * or a negative MB_E* (err set) when it could not rebuild. */
int mb_zoo_plant_verify(const mb_zoo_manifest *m, const char *dir, const char *label,
			mb_error *err);

#endif
