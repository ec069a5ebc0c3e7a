-- Tender search (`GET /v1/search` of the read service, sinks/search.py): InnoDB full-text over the tender's title,
-- description and buyer, and the filters' columns (status and closing date have ix_tenders_status_closing).

ALTER TABLE tenders ADD FULLTEXT INDEX ft_tenders_text (title, description, buyer);

ALTER TABLE tenders ADD KEY ix_tenders_province_closing (province, closing_at);
