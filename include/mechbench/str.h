/*
 * str.h: small string helpers shared by every layer (one home, instead of a
 * static copy per file).
 */
#ifndef MECHBENCH_STR_H
#define MECHBENCH_STR_H

/* A malloc'd copy of s (caller frees); NULL when out of memory. s must not be
 * NULL. strdup is POSIX, not C11, hence this. */
char *mb_str_dup(const char *s);

#endif
