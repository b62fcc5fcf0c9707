/* Lock helper for the mount tests: takes or tests one lock on FILE and reports it.
 *
 * usage: lockhelper FILE OP TYPE START LEN HOLD_MS
 *   OP:   setlk | setlkw | getlk | flock | flocknb
 *   TYPE: r | w
 * Prints one line ("ok", "busy", "free", "conflict <type> <start> <len>") and, after a
 * successful lock, holds it for HOLD_MS milliseconds (closing the file releases it).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: lockhelper FILE OP TYPE START LEN HOLD_MS\n");
        return 2;
    }
    const char *op = argv[2];
    int write = argv[3][0] == 'w';
    int fd = open(argv[1], write ? O_RDWR : O_RDONLY);
    if (fd < 0) { perror("open"); return 2; }
    long hold = atol(argv[6]);
    if (strncmp(op, "flock", 5) == 0) {
        int how = (write ? LOCK_EX : LOCK_SH) | (strcmp(op, "flocknb") == 0 ? LOCK_NB : 0);
        if (flock(fd, how) != 0) {
            if (errno == EWOULDBLOCK) { printf("busy\n"); return 0; }
            perror("flock"); return 2;
        }
    } else {
        struct flock fl;
        memset(&fl, 0, sizeof fl);
        fl.l_type = write ? F_WRLCK : F_RDLCK;
        fl.l_whence = SEEK_SET;
        fl.l_start = atol(argv[4]);
        fl.l_len = atol(argv[5]);
        if (strcmp(op, "getlk") == 0) {
            if (fcntl(fd, F_GETLK, &fl) != 0) { perror("F_GETLK"); return 2; }
            if (fl.l_type == F_UNLCK) printf("free\n");
            else printf("conflict %c %ld %ld\n", fl.l_type == F_WRLCK ? 'w' : 'r',
                        (long)fl.l_start, (long)fl.l_len);
            return 0;
        }
        int cmd = strcmp(op, "setlkw") == 0 ? F_SETLKW : F_SETLK;
        if (fcntl(fd, cmd, &fl) != 0) {
            if (errno == EAGAIN || errno == EACCES) { printf("busy\n"); return 0; }
            perror("F_SETLK"); return 2;
        }
    }
    printf("ok\n");
    fflush(stdout);
    struct timespec ts = { hold / 1000, (hold % 1000) * 1000000L };
    nanosleep(&ts, NULL);
    close(fd);
    return 0;
}
