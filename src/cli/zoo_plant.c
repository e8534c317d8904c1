/* zoo_plant.c: `mechbench zoo plant` and the planted models' `zoo verify`
 * (zoo_plant.h). */
#include "zoo_plant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mechbench/file.h>
#include <mechbench/ioi_planted.h>
#include <mechbench/sha256.h>

#include "cli.h"

typedef struct plant_args {
	const char *out;
} plant_args;

static const mb_cli_opt plant_opts[] = {
	{MB_OPT(PATH, "--out", plant_args, out), .meta = "DIR",
	 .help = "the checkpoint directory (default out/zoo/NAME)"},
};

const mb_cli_cmd mb_zoo_plant_cmd = {
	.name = "zoo plant",
	.opts = plant_opts,
	.n_opts = MB_CLI_N(plant_opts),
	.operands = "NAME",
	.max_operands = 1,
	.about =
	"Writes hand-set model NAME (" MB_IOI_PLANTED_NAME ": an IOI model whose circuit is\n"
	"known by construction, include/mechbench/ioi_planted.h) to --out:\n"
	"config.json, model.safetensors, tokenizer.json, circuit.json (the true circuit),\n"
	"README.md and a MANIFEST (preset \"planted\"). No training: the files are a pure\n"
	"function of the source, and `zoo verify` rebuilds and compares them.\n",
};

int mb_zoo_plant(int argc, char **argv)
{
	plant_args a = {0};
	mb_cli_parsed parsed;
	char outbuf[512], command[1024];
	const char *name, *out;
	size_t len = 0;
	mb_error err;
	int rc;

	if ((rc = mb_cli_parse(&parsed, &a, &mb_zoo_plant_cmd, argc, argv)) != MB_CLI_GO)
		return rc;
	name = parsed.n_operands ? parsed.operands[0] : NULL;
	if (!name || strcmp(name, MB_IOI_PLANTED_NAME) != 0)
		return mb_cli_usage_error("zoo plant", "%s model NAME '%s' (known: %s)",
					  name ? "unknown" : "missing", name ? name : "",
					  MB_IOI_PLANTED_NAME);
	out = a.out;
	if (!out) {
		snprintf(outbuf, sizeof(outbuf), "out/zoo/%s", name);
		out = outbuf;
	}
	command[0] = '\0';
	len = (size_t)snprintf(command, sizeof(command), "mechbench zoo");
	for (int i = 0; i < argc && len < sizeof(command); i++)
		len += (size_t)snprintf(command + len, sizeof(command) - len, " %s", argv[i]);
	if (mb_ioi_planted_write(out, command, &err) < 0)
		return mb_cli_fail(&err);
	printf("%s: written to %s\n", name, out);
	return MB_EXIT_OK;
}

int mb_zoo_plant_verify(const mb_zoo_manifest *m, const char *dir, const char *label,
			mb_error *err)
{
	char tmp[] = "/tmp/mechbench-zoo-plant-XXXXXX", a[4096], b[4096];
	char ha[MB_SHA256_HEX_LEN], hb[MB_SHA256_HEX_LEN];
	int error, differ = 0;

	if (strcmp(m->name, MB_IOI_PLANTED_NAME) != 0)
		return mb_error_set(err, MB_EINVALID, "%s/MANIFEST: name '%s': no planted model "
				    "of that name (known: %s)", dir, m->name, MB_IOI_PLANTED_NAME);
	if (!mkdtemp(tmp))
		return mb_error_set(err, MB_EIO, "cannot create a temporary directory");
	error = mb_ioi_planted_write(tmp, "mechbench zoo verify (rebuild)", err);
	for (size_t i = 0; i < m->nfiles && error == 0; i++) {
		snprintf(a, sizeof(a), "%s/%s", dir, m->files[i]);
		snprintf(b, sizeof(b), "%s/%s", tmp, m->files[i]);
		if ((error = mb_sha256_hex_file(ha, a, err)) < 0 ||
		    (error = mb_sha256_hex_file(hb, b, err)) < 0)
			break;
		if (strcmp(ha, hb) != 0) {
			printf("%s: FAIL: rebuilt %s differs from the committed one\n", label,
			       m->files[i]);
			differ = 1;
		}
	}
	if (error == 0 && !differ)
		printf("%s: rebuilt %s: %zu files identical bit for bit\n", label, m->name,
		       m->nfiles);
	for (size_t i = 0; i < MB_IOI_PLANTED_N_FILES; i++) {
		snprintf(b, sizeof(b), "%s/%s", tmp, mb_ioi_planted_files[i]);
		remove(b);
	}
	snprintf(b, sizeof(b), "%s/MANIFEST", tmp);
	remove(b);
	rmdir(tmp);
	return error < 0 ? error : differ;
}
