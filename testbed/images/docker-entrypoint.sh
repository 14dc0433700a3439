#!/bin/sh
# As the official redis and valkey images' entrypoint does with arguments: options
# (`--port 1`) or a config file (`/etc/redis.conf`) run the server with them; anything else runs
# as given. (The official one also drops root through gosu; these images start as their user.)
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- "$SERVER" "$@"
fi
exec "$@"
