"""The reverse proxy: the mounts that relay each service's paths, the aiohttp client and
its replicas, single posts relayed together, and the gateway's reads from the services."""
