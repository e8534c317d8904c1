/* cli_run.c: see cli_run.h. */
#include "cli_run.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Reads fd from its start to EOF into buf (truncated to cap - 1,
 * NUL-terminated). */
static void slurp(int fd, char *buf, size_t cap)
{
	size_t k = 0;
	char tmp[4096];
	ssize_t r;

	lseek(fd, 0, SEEK_SET);
	while ((r = read(fd, tmp, sizeof(tmp))) > 0) {
		size_t n = (size_t)r;
		if (n > cap - 1 - k)
			n = cap - 1 - k;
		memcpy(buf + k, tmp, n);
		k += n;
	}
	buf[k] = '\0';
}

void mbt_cli_run(mbt_cli_result *r, const char *const *args)
{
	char outp[] = "/tmp/mbt-cli-out-XXXXXX", errp[] = "/tmp/mbt-cli-err-XXXXXX";
	int of = mkstemp(outp), ef = mkstemp(errp), st, n = 0;
	const char *argv[64] = {MB_CLI_PATH};
	pid_t pid;

	cr_assert(of >= 0 && ef >= 0, "mkstemp");
	while (args[n]) {
		cr_assert(n < 62, "mbt_cli_run: more than 62 arguments");
		argv[n + 1] = args[n];
		n++;
	}
	argv[n + 1] = NULL;
	pid = fork();
	cr_assert(pid >= 0, "fork");
	if (pid == 0) {
		dup2(of, 1);
		dup2(ef, 2);
		execv(MB_CLI_PATH, (char *const *)argv);
		_exit(127);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	r->exited = WIFEXITED(st);
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	slurp(of, r->out, sizeof(r->out));
	slurp(ef, r->err, sizeof(r->err));
	close(of);
	close(ef);
	unlink(outp);
	unlink(errp);
}

int mbt_sh(const char *dir, const char *cmd, char **out)
{
	char *full;
	size_t n = strlen(dir) + strlen(cmd) + 32;
	FILE *p;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int status;

	full = malloc(n);
	cr_assert(full != NULL, "malloc");
	snprintf(full, n, "cd '%s' && ( %s ) 2>&1", dir, cmd);
	p = popen(full, "r");
	free(full);
	cr_assert(p != NULL, "popen");
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			buf = realloc(buf, cap);
			cr_assert(buf != NULL, "realloc");
		}
		size_t got = fread(buf + len, 1, 4096, p);
		len += got;
		if (got == 0)
			break;
	}
	buf[len] = '\0';
	status = pclose(p);
	if (out)
		*out = buf;
	else
		free(buf);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void mbt_sh_ok(const char *dir, const char *cmd)
{
	char *out = NULL;
	int rc = mbt_sh(dir, cmd, &out);
	cr_assert_eq(rc, 0, "%s exited %d: %s", cmd, rc, out);
	free(out);
}

size_t mbt_count_lines(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

int mbt_have_tool(const char *tool)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "command -v '%s' > /dev/null 2>&1", tool);
	return system(cmd) == 0;
}

int mbt_require_tools(void)
{
	const char *v = getenv("MB_REQUIRE_TOOLS");
	return v && strcmp(v, "1") == 0;
}
