"""Which editor replica takes a request: the least loaded of those with room, through Serve's own router.

Serve's default (power of two choices) compares two replicas drawn at random. Editor replicas are
few (one per GPU) and each holds one edit and one waiting request, so when requests arrive
together two of them often land on one replica while another GPU idles, and the second waits a
whole edit. ``LeastLoaded`` is a policy for Serve's public router interface
(``ray.serve.request_router.RequestRouter``): it offers Serve every replica its cache counts as
having room, and Serve sends the request to the one with the fewest requests; when none has room
it offers two at random, as Serve does, so a full deployment costs no more probes than before.
Serve keeps doing the rest: the queue, the probing, the backoff, the accounting.
"""

from __future__ import annotations

import random

from ray.serve.request_router import FIFOMixin, PendingRequest, RequestRouter, RunningReplica


class LeastLoaded(FIFOMixin, RequestRouter):
    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        if pending_request is not None:  # every replica was considered: Serve backs off before asking again
            pending_request.routing_context.should_backoff = True
        cache = self.replica_queue_len_cache
        with_room = [replica for replica in candidate_replicas
                     if (cache.get(replica.replica_id) or 0) < replica.max_ongoing_requests]
        if with_room:
            return [with_room]
        return [random.sample(candidate_replicas, min(2, len(candidate_replicas)))]
