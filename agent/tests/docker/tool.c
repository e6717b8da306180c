/* The test image's one program (built static, imported FROM scratch): a few behaviours a
 * container test needs, chosen by the first argument. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_term(int signal_number) {
    (void)signal_number;
    printf("terminating\n");
    exit(0);
}

/* serve PORT REPLY: answers every connection to 127.0.0.1:PORT with REPLY. */
static int serve(int port, const char *reply) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int yes = 1;
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) || listen(listener, 16)) {
        perror("listen");
        return 1;
    }
    printf("listening on %d\n", port);
    for (int served = 1;; served++) {
        int connection = accept(listener, NULL, NULL);
        if (connection < 0) continue;
        dprintf(connection, "%s\n", reply);
        close(connection);
        printf("served %d\n", served);
    }
}

/* fetch PORT: prints what 127.0.0.1:PORT answers, retrying for up to 20 s. */
static int fetch(int port) {
    for (int attempt = 0; attempt < 200; attempt++) {
        int connection = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in address = {0};
        address.sin_family = AF_INET;
        address.sin_port = htons(port);
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(connection, (struct sockaddr *)&address, sizeof address) == 0) {
            char buffer[256];
            ssize_t got = read(connection, buffer, sizeof buffer - 1);
            if (got > 0) {
                buffer[got] = 0;
                printf("reply: %s", buffer);
                return 0;
            }
        }
        close(connection);
        usleep(100000);
    }
    fprintf(stderr, "no answer on port %d\n", port);
    return 1;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc < 2) return 64;
    const char *command = argv[1];
    if (!strcmp(command, "serve") && argc == 4) return serve(atoi(argv[2]), argv[3]);
    if (!strcmp(command, "fetch") && argc == 3) return fetch(atoi(argv[2]));
    if (!strcmp(command, "exit") && argc == 3) {
        printf("exiting with %s\n", argv[2]);
        fprintf(stderr, "to stderr\n");
        return atoi(argv[2]);
    }
    if (!strcmp(command, "env")) {
        char directory[256];
        printf("cwd=%s\n", getcwd(directory, sizeof directory) ? directory : "?");
        for (int i = 2; i < argc; i++) {
            const char *value = getenv(argv[i]);
            printf("%s=%s\n", argv[i], value ? value : "");
        }
        return 0;
    }
    if (!strcmp(command, "sleep")) for (;;) pause();
    if (!strcmp(command, "term")) {
        signal(SIGTERM, on_term);
        printf("ready\n");
        for (;;) pause();
    }
    if (!strcmp(command, "alloc")) {
        for (;;) {
            char *block = malloc(1 << 20);
            if (block) memset(block, 1, 1 << 20);
        }
    }
    return 64;
}
