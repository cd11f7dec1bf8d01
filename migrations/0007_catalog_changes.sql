-- Processes keep products in memory for the price lookups of order commands and drop them
-- when this fires (src/store/catalog.rs). Catalog writes are rare, so a NOTIFY inside their
-- transactions costs nothing that matters (unlike on `events`, see 0006).
create function notify_catalog_changed() returns trigger
language plpgsql as $$
begin
    perform pg_notify('catalog_changed', '');
    return null;
end
$$;

create trigger products_changed
    after insert or update or delete or truncate on products
    for each statement execute function notify_catalog_changed();
