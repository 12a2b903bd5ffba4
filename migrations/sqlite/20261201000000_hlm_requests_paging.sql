-- Paging through a container's (or an account's) requests in submission order
-- (`GET /hlm/v1/requests/...?limit=&marker=`) is a range scan of this index.
CREATE INDEX hlm_requests_address_id ON hlm_requests (account, container, id);
