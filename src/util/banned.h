/*
 * banned.h - calls that are easy to get wrong, refused at compile time.
 *
 * Included last by every tally .c file. Each name below turns into a call to
 * an undeclared function, so the build (with -Werror) fails at the spot.
 * Use strbuf for building strings and snprintf only into sized buffers.
 */
#ifndef TALLY_BANNED_H
#define TALLY_BANNED_H

#define BANNED(func) sorry_##func##_is_banned_in_tally

#undef strcpy
#define strcpy(x, y) BANNED(strcpy)
#undef strcat
#define strcat(x, y) BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) BANNED(strncpy)
#undef strncat
#define strncat(x, y, n) BANNED(strncat)
#undef sprintf
#define sprintf(...) BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) BANNED(vsprintf)
#undef strtok
#define strtok(x, y) BANNED(strtok)
#undef gets
#define gets(x) BANNED(gets)
#undef atoi
#define atoi(x) BANNED(atoi)

#endif
